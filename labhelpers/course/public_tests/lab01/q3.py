OK_FORMAT = True

test = {   'name': 'q3',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': ">>> assert isinstance(wrong, (int, np.integer)) and 0 <= wrong < len(x_test), 'wrong: an index into x_test'\n"
                                               ">>> assert pred_c != true_c, 'pred_c and true_c: the predicted and the true class of a misclassified image'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}

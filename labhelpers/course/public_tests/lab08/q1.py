OK_FORMAT = True

test = {   'name': 'q1',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': ">>> assert len(runs) == 3 and len(images) == 3, 'runs: three results; images: their three images'\n"
                                               ">>> assert images.shape[1:] == x_test.shape[1:], 'images: optimised inputs, shaped like the test images'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}

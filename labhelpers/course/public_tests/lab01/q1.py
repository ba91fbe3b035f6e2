OK_FORMAT = True

test = {   'name': 'q1',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': ">>> assert isinstance(second, (int, np.integer)) and second != predicted, 'second: the class ranked second, an int'\n"
                                               ">>> assert len(maps) == 3, 'maps: a list of three maps (predicted, second, Trouser)'\n"
                                               '>>> assert all((m.shape == heatmap.shape for m in maps)), "each map at leaky_relu2\'s resolution (upsample=False)"\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}

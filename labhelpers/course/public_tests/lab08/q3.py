OK_FORMAT = True

test = {   'name': 'q3',
    'points': 2,
    'suites': [   {   'cases': [{'code': ">>> assert len(maps) == 3 and all((np.shape(m) == np.shape(maps[0]) for m in maps)), 'maps: three occlusion maps'\n", 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}

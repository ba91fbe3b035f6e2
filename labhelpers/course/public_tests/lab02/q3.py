OK_FORMAT = True

test = {   'name': 'q3',
    'points': 2,
    'suites': [   {   'cases': [{'code': ">>> assert len(maps_7_1) == 2 and all((m.shape == maps2[0].shape for m in maps_7_1)), 'maps_7_1: two cam2 CAMs'\n", 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}

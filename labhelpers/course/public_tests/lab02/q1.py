OK_FORMAT = True

test = {   'name': 'q1',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': ">>> assert len(first_maps) == 10 and first_maps[0].shape == maps2[0].shape, 'first_maps: ten cam2 CAMs'\n"
                                               ">>> assert len(first_classes) == 10, 'first_classes: the ten predicted classes'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}

OK_FORMAT = True

test = {   'name': 'q2',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': ">>> assert sorted(results) == [0.0, 0.5, 1.0], 'results: one entry per baseline 0.0, 1.0, 0.5'\n"
                                               ">>> assert all((r.maps.shape[0] == len(garments) for r in results.values())), 'each result explains every garment'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}

OK_FORMAT = True

test = {   'name': 'q2',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> assert fine.shape == maps1.shape[:2], "fine: one map at leaky_relu1\'s resolution (upsample=False)"\n'
                                               '>>> assert 0 <= fine.min() and fine.max() <= 1, "fine: scaled to [0, 1] (lh.gradcam\'s default)"\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}

"""The course wing: notebooks, execution, reports, rosters, editions, grading, Colab, PDF.

It sees notebooks, parameters and result files only: it imports ``labhelpers.config`` and
``labhelpers.files`` (standard library only) and never TensorFlow or the lab science
(tests/test_structure.py checks ``sys.modules`` and the source's imports).
"""

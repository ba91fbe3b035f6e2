"""The course wing: notebooks, execution, reports, rosters, editions, grading, Colab, PDF.

It sees notebooks, parameters and result files only: it imports ``labhelpers.config``
(stdlib) and never TensorFlow or the lab science (a test checks ``sys.modules``).
"""

"""The course wing: notebooks, execution, reports, rosters, editions, grading, Colab, PDF.

It sees notebooks, parameters and result files only: it imports ``labhelpers.config`` and
``labhelpers.files`` (standard library only) and never TensorFlow or the lab science
(tests/test_structure.py checks ``sys.modules`` and the source's imports).
"""

import sys

# jsonschema (under nbformat and papermill) builds a Lark parser of RFC 3987 at import when the optional
# rfc3987-syntax is installed (jupyter-events brings it): ~1.9 s of CPU in every process of this wing (the run
# CLI, each pool or Dask worker, each grading worker) on the course's 2-core VM, for the "iri" formats that no
# notebook schema uses. Without it jsonschema simply skips those formats. Kernels are other processes.
sys.modules.setdefault("rfc3987_syntax", None)

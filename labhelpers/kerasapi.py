"""The one Keras alias of the course: Keras 3 by default, tf-keras (Keras 2) when
``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is imported.

TensorFlow's ``tf.keras`` follows the same variable, and tf-keras-vis works through
``tf.keras``; importing ``keras`` from here keeps labhelpers' models, modifiers and
tf-keras-vis on the same Keras. Notebooks write ``from labhelpers import keras``.
"""

from . import config

LEGACY = config.legacy_keras()

if LEGACY:  # exercised by tests/test_legacy_keras.py in a subprocess
    import tf_keras as keras
else:
    import keras

__all__ = ["LEGACY", "keras"]

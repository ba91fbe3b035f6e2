"""The labs' own networks, as Functional models with readable layer names (``conv1``, ``leaky_relu2``,
``gap``, ...) so that notebooks and explanations can name layers: ``build_fashion_cnn`` (labs 01, 06, 09),
``build_mnist_cam1`` / ``build_mnist_cam2`` (lab 02).
"""

from __future__ import annotations

from ..kerasapi import keras


# ----------------------------------------------------------------------------- the labs' networks
def build_fashion_cnn(input_shape=(28, 28, 1), n_classes: int = 10) -> keras.Model:
    """The Fashion-MNIST lab's network.

    conv1 (32 3x3) -> bn1 -> leaky_relu1 -> pool1 -> conv2 (64 3x3) -> bn2 -> leaky_relu2
    -> pool2 -> flatten -> dense1 (64) -> bn3 -> leaky_relu3 -> dropout (0.4) -> predictions
    (10, softmax). He-normal initialisation and L1L2(1e-5, 1e-4) kernel regularisation on
    the hidden convolution and dense layers; Adam, sparse categorical cross-entropy.
    Expects images scaled to [0, 1] with a channel axis: ``x[..., None] / 255``.
    """
    layers = keras.layers

    def hidden(kind, units, name, **kwargs):
        return kind(units, name=name, kernel_initializer="he_normal",
                    kernel_regularizer=keras.regularizers.L1L2(l1=1e-5, l2=1e-4), **kwargs)

    inputs = keras.Input(shape=input_shape, name="image")
    x = hidden(layers.Conv2D, 32, "conv1", kernel_size=(3, 3))(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.LeakyReLU(name="leaky_relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = hidden(layers.Conv2D, 64, "conv2", kernel_size=(3, 3))(x)
    x = layers.BatchNormalization(name="bn2")(x)
    x = layers.LeakyReLU(name="leaky_relu2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = hidden(layers.Dense, 64, "dense1")(x)
    x = layers.BatchNormalization(name="bn3")(x)
    x = layers.LeakyReLU(name="leaky_relu3")(x)
    x = layers.Dropout(0.4, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="fashion_cnn")
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _mnist_cam(name: str, pooling: bool, input_shape, n_classes: int) -> keras.Model:
    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, filters in enumerate((16, 32, 64, 128), start=1):
        x = layers.Conv2D(filters, (3, 3), padding="same", activation="relu", kernel_initializer="he_normal",
                          name=f"conv{i}")(x)
        if pooling and i < 4:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(optimizer=keras.optimizers.Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def build_mnist_cam1(input_shape=(28, 28, 1), n_classes: int = 10) -> keras.Model:
    """The CAM lab's first network: conv1 (16) -> pool1 -> conv2 (32) -> pool2 -> conv3 (64)
    -> pool3 -> conv4 (128) -> gap -> predictions (10, softmax); 3x3 ReLU convolutions with
    'same' padding and He-normal initialisation (the original lab kept Keras's Glorot-uniform default; He's
    suits ReLU layers, as in the Fashion CNN, and cam2 learns faster with it: test accuracy 0.80 / 0.93 after
    smoke epochs 1-2 against 0.59 / 0.88 / 0.93 after 1-3). Its last feature maps, hence its CAM, are 3x3
    (28 -> 14 -> 7 -> 3). Categorical cross-entropy: one-hot labels."""
    return _mnist_cam("mnist_cam1", True, input_shape, n_classes)


def build_mnist_cam2(input_shape=(28, 28, 1), n_classes: int = 10) -> keras.Model:
    """``build_mnist_cam1`` without the pooling layers: the CAM keeps the full 28x28
    resolution (at about 10x the compute per image)."""
    return _mnist_cam("mnist_cam2", False, input_shape, n_classes)

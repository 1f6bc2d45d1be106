"""The seed's backpropagation, as published, with its relu helper.

Hidden layers use relu (its derivative at 0 taken to be 0, as the seed says); the output
layer is a sigmoid with cross-entropy, so dZ[L] = A[L] - Y. dZ and dA are kept per example
(m times the true partial) and the 1/m average sits in dW and db.

    gradparity debug examples/seed_backprop.py
"""

# ruff: noqa: E501, E741  (the seed's code as published: `l` for the layer index)

import numpy as np


def relu(Z, deriv=False):
    if deriv:
        return np.where(Z > 0, 1.0, 0.0)
    return np.maximum(0, Z)


def backpropagation(cache, Y, parameters):
    L = len(parameters) // 2
    m = Y.shape[1]
    grads = {}
    grads["dZ" + str(L)] = cache["A" + str(L)] - Y
    grads["dW" + str(L)] = (1 / m) * np.dot(grads["dZ" + str(L)], cache["A" + str(L - 1)].T)
    grads["db" + str(L)] = (1 / m) * np.sum(grads["dZ" + str(L)], axis=1, keepdims=True)
    for l in range(L - 1, 0, -1):
        grads["dA" + str(l)] = np.dot(parameters["W" + str(l + 1)].T, grads["dZ" + str(l + 1)])
        grads["dZ" + str(l)] = np.multiply(grads["dA" + str(l)], relu(cache["Z" + str(l)], deriv=True))
        grads["dW" + str(l)] = (1 / m) * np.dot(grads["dZ" + str(l)], cache["A" + str(l - 1)].T)
        grads["db" + str(l)] = (1 / m) * np.sum(grads["dZ" + str(l)], axis=1, keepdims=True)
    return grads

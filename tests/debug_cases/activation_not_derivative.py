"""relu(Z) where relu(Z, deriv=True) belongs: the derivative flag is forgotten."""

# ruff: noqa: E501, E741  (learner-style code, as in the seed)

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
        grads["dZ" + str(l)] = np.multiply(grads["dA" + str(l)], relu(cache["Z" + str(l)]))
        grads["dW" + str(l)] = (1 / m) * np.dot(grads["dZ" + str(l)], cache["A" + str(l - 1)].T)
        grads["db" + str(l)] = (1 / m) * np.sum(grads["dZ" + str(l)], axis=1, keepdims=True)
    return grads

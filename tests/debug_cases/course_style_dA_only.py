"""Course-style grads: dA[l-1], dW[l], db[l] from a helper, dZ kept local. The helper
forgets the 1/m in db."""

# ruff: noqa: E501, E741  (learner-style code)

import numpy as np


def linear_backward(dZ, A_prev, W):
    m = A_prev.shape[1]
    dW = np.dot(dZ, A_prev.T) / m
    db = np.sum(dZ, axis=1, keepdims=True)
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db


def backpropagation(cache, Y, parameters):
    L = len(parameters) // 2
    grads = {}
    dZ = cache["A" + str(L)] - Y
    grads["dA" + str(L - 1)], grads["dW" + str(L)], grads["db" + str(L)] = linear_backward(dZ, cache["A" + str(L - 1)], parameters["W" + str(L)])
    for l in range(L - 1, 0, -1):
        dZ = grads["dA" + str(l)] * (cache["Z" + str(l)] > 0)
        grads["dA" + str(l - 1)], grads["dW" + str(l)], grads["db" + str(l)] = linear_backward(dZ, cache["A" + str(l - 1)], parameters["W" + str(l)])
    return grads

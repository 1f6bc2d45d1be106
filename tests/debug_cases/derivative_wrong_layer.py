"""tanh hidden layers; tanh' evaluated at the next layer's Z (an off-by-one index). At the
last hidden layer that Z is the output's (1 x m) and broadcasts without an error."""

# ruff: noqa: E501, E741  (learner-style code, as in the seed)

import numpy as np


def forward(X, parameters):
    L = len(parameters) // 2
    cache = {"A0": X}
    for l in range(1, L + 1):
        cache["Z" + str(l)] = np.dot(parameters["W" + str(l)], cache["A" + str(l - 1)]) + parameters["b" + str(l)]
        cache["A" + str(l)] = np.tanh(cache["Z" + str(l)]) if l < L else 1 / (1 + np.exp(-cache["Z" + str(l)]))
    return cache["A" + str(L)], cache


def backpropagation(cache, Y, parameters):
    L = len(parameters) // 2
    m = Y.shape[1]
    grads = {}
    grads["dZ" + str(L)] = cache["A" + str(L)] - Y
    grads["dW" + str(L)] = (1 / m) * np.dot(grads["dZ" + str(L)], cache["A" + str(L - 1)].T)
    grads["db" + str(L)] = (1 / m) * np.sum(grads["dZ" + str(L)], axis=1, keepdims=True)
    for l in range(L - 1, 0, -1):
        grads["dA" + str(l)] = np.dot(parameters["W" + str(l + 1)].T, grads["dZ" + str(l + 1)])
        grads["dZ" + str(l)] = grads["dA" + str(l)] * (1 - np.tanh(cache["Z" + str(l + 1)]) ** 2)
        grads["dW" + str(l)] = (1 / m) * np.dot(grads["dZ" + str(l)], cache["A" + str(l - 1)].T)
        grads["db" + str(l)] = (1 / m) * np.sum(grads["dZ" + str(l)], axis=1, keepdims=True)
    return grads

"""JAX networks written one example at a time (W @ x + b), batched with vmap for the loss:
a dict of parameters with tanh units and a sigmoid output, and a list of (W, b) with relu
units and log-probabilities from logsumexp."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

rng = np.random.default_rng(0)
params = {
    "W1": rng.normal(size=(5, 3)), "b1": rng.normal(size=(5,)),
    "W2": rng.normal(size=(5, 5)), "b2": rng.normal(size=(5,)),
    "W3": rng.normal(size=(2, 5)), "b3": rng.normal(size=(2,)),
}


def net(params, x):
    h = jnp.tanh(params["W1"] @ x + params["b1"])
    h = jnp.tanh(params["W2"] @ h + params["b2"])
    return 1 / (1 + jnp.exp(-(params["W3"] @ h + params["b3"])))


layer_sizes = [10, 16, 3]


def init_network_params(sizes, key):
    keys = jax.random.split(key, len(sizes))
    return [(0.3 * jax.random.normal(k, (n, m)), 0.3 * jax.random.normal(k, (n,)))
            for m, n, k in zip(sizes[:-1], sizes[1:], keys)]  # noqa: B905 - as written


def predict(params, image):
    activations = image
    for w, b in params[:-1]:
        outputs = jnp.dot(w, activations) + b
        activations = jnp.maximum(outputs, 0)
    final_w, final_b = params[-1]
    logits = jnp.dot(final_w, activations) + final_b
    return logits - logsumexp(logits)


batched_predict = jax.vmap(predict, in_axes=(None, 0))


def loss(params, images, targets):
    preds = batched_predict(params, images)
    return -jnp.mean(preds * targets)

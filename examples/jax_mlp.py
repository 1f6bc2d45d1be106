"""A JAX MLP: params as (W, b) pairs, a loss on (params, batch), a custom_vjp activation.

    gradparity debug --jax examples/jax_mlp.py:loss
"""

import jax
import jax.numpy as jnp

layer_sizes = [8, 16, 16, 3]


def init_params(sizes, key):
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (m, n)) / jnp.sqrt(m), jnp.zeros(n))
            for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)]


@jax.custom_vjp
def swish(x):
    return x * jax.nn.sigmoid(x)


def swish_fwd(x):
    return swish(x), x


def swish_bwd(x, g):
    s = jax.nn.sigmoid(x)
    return (g * (s + x * s * (1 - s)),)


swish.defvjp(swish_fwd, swish_bwd)


def predict(params, x):
    for w, b in params[:-1]:
        x = swish(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def loss(params, batch):
    x, y = batch
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(predict(params, x)) * y, axis=-1))

from builtins import object
import numpy as np

from ..layers import *
from ..layer_utils import *


class TwoLayerNet(object):
    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0):
        self.params = {}
        self.reg = reg
        self.params['W1'] = weight_scale * np.random.randn(input_dim, hidden_dim)
        self.params['b1'] = np.zeros(hidden_dim)
        self.params['W2'] = weight_scale * np.random.randn(hidden_dim, num_classes)
        self.params['b2'] = np.zeros(num_classes)

    def loss(self, X, y=None):
        scores = None
        h1, cache_h1 = affine_relu_forward(X, self.params['W1'], self.params['b1'])
        scores, cache_scores = affine_forward(h1, self.params['W2'], self.params['b2'])
        if y is None:
            return scores
        loss, grads = 0, {}
        data_loss, dscores = softmax_loss(scores, y)
        reg_loss = 0.5 * self.reg * (np.sum(self.params['W1'] ** 2) + np.sum(self.params['W2'] ** 2))
        loss = data_loss + reg_loss
        dh1, dW2, db2 = affine_backward(dscores, cache_scores)
        dX, dW1, db1 = affine_relu_backward(dh1, cache_h1)
        grads['W1'] = dW1 + self.reg * self.params['W1']
        grads['b1'] = db1
        grads['W2'] = dW2 + self.reg * self.params['W2']
        grads['b2'] = db2
        return loss, grads


class FullyConnectedNet(object):
    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10,
                 dropout=1, normalization=None, reg=0.0,
                 weight_scale=1e-2, dtype=np.float32, seed=None):
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = dtype
        self.params = {}
        dims = [input_dim] + hidden_dims + [num_classes]
        for i in range(self.num_layers):
            self.params['W%d' % (i + 1)] = weight_scale * np.random.randn(dims[i], dims[i + 1])
            self.params['b%d' % (i + 1)] = np.zeros(dims[i + 1])
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        X = X.astype(self.dtype)
        caches = {}
        out = X
        for i in range(1, self.num_layers):
            out, caches[i] = affine_relu_forward(out, self.params['W%d' % i], self.params['b%d' % i])
        scores, caches[self.num_layers] = affine_forward(out, self.params['W%d' % self.num_layers],
                                                         self.params['b%d' % self.num_layers])
        if y is None:
            return scores
        loss, grads = 0.0, {}
        loss, dout = softmax_loss(scores, y)
        for i in range(1, self.num_layers + 1):
            loss += 0.5 * self.reg * np.sum(self.params['W%d' % i] ** 2)
        L = self.num_layers
        dout, grads['W%d' % L], grads['b%d' % L] = affine_backward(dout, caches[L])
        grads['W%d' % L] += self.reg * self.params['W%d' % L]
        for i in range(L - 1, 0, -1):
            dout, grads['W%d' % i], grads['b%d' % i] = affine_relu_backward(dout, caches[i])
            grads['W%d' % i] += self.reg * self.params['W%d' % i]
        return loss, grads

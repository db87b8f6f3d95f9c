"""Closed-form SDEs used across the core tests (the exact solution is a function of W)."""

import math

import torch


class GBM(torch.nn.Module):
    """du = mu u dt + sigma u dW; u_t = u0 exp((mu - sigma^2/2) t + sigma W_t) (Ito).

    With ``sde_type="stratonovich"`` the drift is ``(mu - sigma^2/2) u`` so the solution is the same."""

    noise_type = "diagonal"

    def __init__(self, mu=0.5, sigma=0.8, sde_type="ito"):
        super().__init__()
        self.mu, self.sigma, self.sde_type = mu, sigma, sde_type

    def f(self, t, y):
        drift = self.mu if self.sde_type == "ito" else self.mu - 0.5 * self.sigma**2
        return drift * y

    def g(self, t, y):
        return self.sigma * y

    def exact(self, y0, t, W):
        return y0 * torch.exp((self.mu - 0.5 * self.sigma**2) * t + self.sigma * W)


class Tanh(torch.nn.Module):
    """du = -1/4 u (1 - u^2) dt + 1/2 (1 - u^2) dW; u_t = tanh(W_t / 2 + atanh u0)."""

    noise_type = "diagonal"

    def __init__(self, sde_type="ito"):
        super().__init__()
        self.sde_type = sde_type

    def f(self, t, y):
        if self.sde_type == "stratonovich":  # Ito drift minus 1/2 g g'
            return -0.25 * y * (1 - y**2) + 0.5 * y * (1 - y**2) * 0.5
        return -0.25 * y * (1 - y**2)

    def g(self, t, y):
        return 0.5 * (1 - y**2)

    def exact(self, y0, t, W):
        return torch.tanh(0.5 * W + torch.atanh(y0))


class Additive(torch.nn.Module):
    """du = (b / sqrt(1+t) - u / (2 (1+t))) dt + a b / sqrt(1+t) dW; u_t = (u0 + b (t + a W_t)) / sqrt(1+t)."""

    noise_type = "additive"

    def __init__(self, a=1.0, b=0.8, sde_type="ito"):
        super().__init__()
        self.a, self.b, self.sde_type = a, b, sde_type

    def f(self, t, y):
        return self.b / torch.sqrt(1 + t) - y / (2 * (1 + t))

    def g(self, t, y):
        d = y.shape[-1]
        eye = torch.eye(d, dtype=y.dtype, device=y.device).expand(*y.shape[:-1], d, d)
        return self.a * self.b / torch.sqrt(1 + t) * eye

    def exact(self, y0, t, W):
        return (y0 + self.b * (t + self.a * W)) / math.sqrt(1 + t)


class OU(torch.nn.Module):
    """du = -lam u dt + sigma dW (additive). The solution on a Brownian path is
    u_T = e^{-lam T} u0 + sigma int_0^T e^{-lam (T - s)} dW_s; :meth:`reference` evaluates it on a
    fine dyadic grid with the exact one-step map up to O(h^2.5) per step:
    int_{t_k}^{t_k+h} e^{-lam (t_k+h-s)} dW = W - lam U + O(h^2.5), U = int (W_s - W_{t_k}) ds."""

    noise_type = "additive"

    def __init__(self, lam=2.0, sigma=1.0, sde_type="ito"):
        super().__init__()
        self.lam, self.sigma, self.sde_type = lam, sigma, sde_type

    def f(self, t, y):
        return -self.lam * y

    def g(self, t, y):
        return torch.full((*y.shape, 1), self.sigma, dtype=y.dtype, device=y.device)

    def reference(self, y0, T, bm, levels=12):
        n = 2**levels
        h = T / n
        decay = math.exp(-self.lam * h)
        y = y0
        for k in range(n):
            W, U = bm(k * h, (k + 1) * h, return_U=True)
            y = decay * y + self.sigma * (W - self.lam * U)
        return y

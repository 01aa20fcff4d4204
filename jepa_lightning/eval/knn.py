"""Weighted k-nearest-neighbour classification on cosine similarity (the DINO protocol)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                k: int = 20, temperature: float = 0.07, num_classes: int | None = None,
                chunk: int = 1024, center: bool = True) -> torch.Tensor:
    """Predicted class [M] of each test row: the k most cosine-similar training rows vote for their labels
    with weight exp(sim / temperature). Test rows are processed `chunk` at a time, so memory stays at
    O(chunk * n_train).

    `center` (default) subtracts the training rows' mean from both sides before the cosine: pooled
    LayerNorm'd tokens share one large mean direction that makes every pair similar (a random ViT on digits:
    53.6 % uncentred vs 70.8 % centred), so uncentred kNN mostly measures that offset."""
    if train_features.dim() != 2 or test_features.dim() != 2 or train_features.size(1) != test_features.size(1):
        raise ValueError(f"kNN expects features [n, D] and [m, D], got {list(train_features.shape)} and "
                         f"{list(test_features.shape)}")
    if train_labels.shape != train_features.shape[:1]:
        raise ValueError(f"train_labels must be [{train_features.size(0)}], got {list(train_labels.shape)}")
    if train_features.size(0) == 0:
        raise ValueError("kNN needs at least one training feature")
    if k < 1 or temperature <= 0 or chunk < 1:
        raise ValueError(f"kNN needs k >= 1, temperature > 0, chunk >= 1; got k={k}, "
                         f"temperature={temperature}, chunk={chunk}")
    train_labels = train_labels.long().to(train_features.device)
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    k = min(k, train_features.size(0))
    bank = train_features.float()
    mean = bank.mean(0, keepdim=True) if center else torch.zeros_like(bank[:1])
    bank = F.normalize(bank - mean, dim=1)
    preds = []
    for start in range(0, test_features.size(0), chunk):
        query = F.normalize(test_features[start:start + chunk].float().to(bank.device) - mean, dim=1)
        sim, idx = (query @ bank.T).topk(k, dim=1)
        votes = torch.zeros(query.size(0), num_classes, device=bank.device)
        votes.scatter_add_(1, train_labels[idx], (sim / temperature).exp())
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long, device=bank.device)


def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, k: int = 20, temperature: float = 0.07, num_classes: int | None = None,
                 chunk: int = 1024, center: bool = True) -> float:
    """Top-1 accuracy of `knn_predict` on (test_features, test_labels)."""
    if test_labels.shape != test_features.shape[:1]:
        raise ValueError(f"test_labels must be [{test_features.size(0)}], got {list(test_labels.shape)}")
    if test_features.size(0) == 0:
        raise ValueError("kNN accuracy needs at least one test feature")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    preds = knn_predict(train_features, train_labels, test_features, k, temperature, num_classes, chunk, center)
    return (preds.cpu() == test_labels.long().cpu()).float().mean().item()

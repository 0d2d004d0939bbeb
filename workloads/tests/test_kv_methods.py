"""Selection of the eviction methods and KIVI-style quantization on small hand-worked tensors."""

from __future__ import annotations

import pytest
import torch

from workloads.spatten import selection as sel
from workloads.spatten.eviction_policy import Eviction
from workloads.spatten.kvquant import quantize_keys, quantize_values
from workloads.spatten.policy import PolicyError, Quantization, policy_from_dict


def test_topk_masks_break_ties_to_the_lower_index() -> None:
    s = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert sel.topk_mask(s, 2).tolist() == [[False, True, True, False, False]]
    counts = torch.tensor([[1], [3]])
    s2 = torch.tensor([[[0.1, 0.5, 0.5, 0.2]], [[0.4, 0.1, 0.4, 0.3]]])
    assert sel.topk_count_mask(s2, counts).tolist() == [[[False, True, False, False]], [[True, False, True, True]]]


def test_streaming_and_longformer_patterns() -> None:
    e = Eviction(enabled=True, method="streaming", budget=0.5, sink_tokens=2, min_tokens=1)
    # 12 tokens, keep 6: sinks 0, 1 and the 4 most recent 8..11
    assert sel.static_mask(e, 0, 4, 12).nonzero().flatten().tolist() == [0, 1, 8, 9, 10, 11]
    lf = Eviction(enabled=True, method="longformer", budget=0.5, sink_tokens=1, global_stride=4, min_tokens=1)
    # globals: 0 (sink), 4, 8 (stride 4; 0 too) -> 3 among 0..10; window 6 - 3 = 3: 9, 10, 11
    assert sel.static_mask(lf, 0, 4, 12).nonzero().flatten().tolist() == [0, 4, 8, 9, 10, 11]
    # start_layer keeps layer 0 dense; min_tokens floors the budget
    e2 = Eviction(enabled=True, method="streaming", budget=0.1, sink_tokens=1, min_tokens=4, start_layer=1)
    assert e2.keep_count(0, 4, 100) == 100 and e2.keep_count(1, 4, 20) == 4


def test_pyramid_budgets_average_the_budget() -> None:
    e = Eviction(enabled=True, method="snapkv", budget=0.2, layer_spread=0.5)
    b = [e.layer_budget(layer, 5) for layer in range(5)]
    assert b == pytest.approx([0.3, 0.25, 0.2, 0.15, 0.1])


def test_h2o_tova_snapkv_scores() -> None:
    p = torch.tensor([[[0.5, 0.3, 0.2, 0.0], [0.1, 0.1, 0.6, 0.2]]])  # 1 K/V head, 2 rows, 4 tokens
    ext: dict = {}
    h2o = Eviction(enabled=True, method="h2o")
    assert sel.update_scores(h2o, ext, p)[0].tolist() == pytest.approx([0.6, 0.4, 0.8, 0.2])
    p2 = torch.tensor([[[0.1, 0.0, 0.0, 0.4, 0.5]]])  # next call: one more token
    assert sel.update_scores(h2o, ext, p2)[0].tolist() == pytest.approx([0.7, 0.4, 0.8, 0.6, 0.5])
    tova = Eviction(enabled=True, method="tova")
    assert sel.update_scores(tova, {}, p)[0].tolist() == pytest.approx([0.1, 0.1, 0.6, 0.2])
    snap = Eviction(enabled=True, method="snapkv", observation_window=2, pooling=3)
    ext = {}
    # window of 2 rows: sums [0.6, 0.4, 0.8, 0.2]; max-pool 3: [0.6, 0.8, 0.8, 0.8]
    assert sel.update_scores(snap, ext, p)[0].tolist() == pytest.approx([0.6, 0.8, 0.8, 0.8])
    # next call: the oldest row leaves the window: rows [0.1,0.1,0.6,0.2,0] + [0.1,0,0,0.4,0.5]
    # = [0.2, 0.1, 0.6, 0.6, 0.5] -> pooled [0.2, 0.6, 0.6, 0.6, 0.6]
    assert sel.update_scores(snap, ext, p2)[0].tolist() == pytest.approx([0.2, 0.6, 0.6, 0.6, 0.6])


def test_evict_uniform_layer_and_adaptive() -> None:
    score = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.2, 0.3, 0.0, 0.0],
                          [0.0, 0.8, 0.6, 0.1, 0.95, 0.2, 0.0, 0.0]], dtype=torch.float64)
    alive = torch.ones(2, 8, dtype=torch.bool)
    alive[0, 3] = False  # evicted earlier: never returns
    e = Eviction(enabled=True, method="h2o", sink_tokens=1, recent_tokens=2)
    got = sel.evict(e, score, alive, 4)
    # head 0: forced 0, 6, 7; best alive of the rest: 2 (0.5); head 1: forced 0, 6, 7; best: 4 (0.9)
    assert got.int().tolist() == [[1, 0, 1, 0, 0, 0, 1, 1], [1, 0, 0, 0, 1, 0, 1, 1]]
    lay = Eviction(enabled=True, method="h2o", sink_tokens=1, recent_tokens=2, granularity="layer")
    got = sel.evict(lay, score, alive, 4)
    # summed: [0.9, 0.9, 1.1, 0.8, 1.15, 0.5]; token 3 dead in head 0 -> dead for the layer; best: 4
    assert got.int().tolist() == [[1, 0, 0, 0, 1, 0, 1, 1]] * 2
    ada = Eviction(enabled=True, method="h2o", sink_tokens=1, recent_tokens=2, head_budgets="adaptive",
                   adaptive_floor=0.0)
    got = sel.evict(ada, score, torch.ones(2, 8, dtype=torch.bool), 4)
    # 8 in all; each head its 3 forced first (floor = 3); the other 2 by one top-k over both
    # heads: 0.95 (head 1, token 4) and 0.8 (head 1, token 1)
    assert got.int().tolist() == [[1, 0, 0, 0, 0, 0, 1, 1], [1, 1, 0, 0, 1, 0, 1, 1]]


def test_threshold_keep() -> None:
    pred = torch.tensor([[[0.001, 0.6, 0.004, 0.395]], [[0.002, 0.001, 0.001, 0.996]]])
    forced = torch.tensor([True, False, False, False]).view(1, 1, -1)
    got = sel.threshold_keep(pred, 0.003, forced)
    assert got.int().tolist() == [[[1, 1, 1, 1]], [[1, 0, 0, 1]]]
    got = sel.threshold_keep(pred, 0.999, torch.zeros(1, 1, 4, dtype=torch.bool))
    assert got.int().tolist() == [[[0, 1, 0, 0]], [[0, 0, 0, 1]]]  # each row keeps its best


def test_value_threshold_mask() -> None:
    """p_j >= min(T, the row's largest p): a row with nothing above T keeps its largest."""
    p = torch.tensor([[[0.001, 0.6, 0.004, 0.395]], [[0.25, 0.25, 0.25, 0.25]]])
    assert sel.value_threshold_mask(p, 0.004).int().tolist() == [[[0, 1, 1, 1]], [[1, 1, 1, 1]]]
    assert sel.value_threshold_mask(p, 0.3).int().tolist() == [[[0, 1, 0, 1]], [[1, 1, 1, 1]]]
    assert sel.value_threshold_mask(p, 0.9).int().tolist() == [[[0, 1, 0, 0]], [[1, 1, 1, 1]]]
    # one threshold a row (a relative threshold over rows of different lengths)
    assert sel.value_threshold_mask(p, torch.tensor([[0.3], [0.9]])).int().tolist() == [[[0, 1, 0, 1]], [[1, 1, 1, 1]]]


def test_kivi_keys_per_channel_groups_msb_and_residual() -> None:
    # one K/V head, 3 tokens, 2 channels
    k = torch.tensor([[[0.0, 1.0], [1.5, -1.0], [3.0, 0.0]]])
    q = Quantization(enabled=True, key_msb_bits=1, key_lsb_bits=1, key_axis="channel", asymmetric=True)
    full, msb = quantize_keys(k, q)
    # channel 0: min 0, max 3, 2 bits: scale 1, codes 0, 2 (1.5 rounds to even 2), 3
    # channel 1: min -1, max 1: scale 2/3, codes 3, 0, 1.5 -> 2
    assert full[0, :, 0].tolist() == pytest.approx([0.0, 2.0, 3.0])
    assert full[0, :, 1].tolist() == pytest.approx([1.0, -1.0, 1 / 3])
    # MSB-only: floor(code / 2) * 2: codes 0, 2, 2 / 2, 0, 2
    assert msb[0, :, 0].tolist() == pytest.approx([0.0, 2.0, 2.0])
    assert msb[0, :, 1].tolist() == pytest.approx([1 / 3, -1.0, 1 / 3])
    qg = Quantization(enabled=True, key_msb_bits=2, key_lsb_bits=0, key_axis="channel", group_tokens=2,
                      residual_tokens=1)
    full, _ = quantize_keys(k, qg)
    # symmetric 2 bits (qmax 1), groups {0, 1} and {2}; token 2 is the residual (kept exact)
    # group 0 channel 0: amax 1.5 -> codes 0, 1 -> 0, 1.5; channel 1: amax 1 -> 1, -1
    assert full[0].flatten().tolist() == pytest.approx([0.0, 1.0, 1.5, -1.0, 3.0, 0.0])
    qt = Quantization(enabled=True, key_msb_bits=3, key_lsb_bits=0)
    full, _ = quantize_keys(k, qt)
    # per tensor, symmetric 3 bits (qmax 3): scale 1; 1.5 -> 2
    assert full[0].flatten().tolist() == pytest.approx([0.0, 1.0, 2.0, -1.0, 3.0, 0.0])


def test_kivi_values_per_token_and_channel() -> None:
    v = torch.tensor([[[0.0, 3.0, 1.0], [-2.0, 2.0, 0.5]]])
    q = Quantization(enabled=True, value_bits=2, value_axis="token", asymmetric=True)
    # token 0: min 0 max 3, scale 1: 0, 3, 1; token 1: min -2 max 2, scale 4/3: codes 0, 3, 1.875->2
    got = quantize_values(v, q)
    assert got[0].flatten().tolist() == pytest.approx([0.0, 3.0, 1.0, -2.0, 2.0, -2.0 + 8 / 3])
    qc = Quantization(enabled=True, value_bits=2, value_axis="channel")
    # symmetric 2 bits per channel: amax 2, 3, 1 -> codes round(x / amax) (0.5 rounds to even 0)
    assert quantize_values(v, qc)[0].flatten().tolist() == pytest.approx([0.0, 3.0, 1.0, -2.0, 3.0, 0.0])


@pytest.mark.parametrize("section,message", [
    ({"eviction": {"enabled": True, "method": "lru"}}, "eviction.method"),
    ({"eviction": {"enabled": True, "budget": 0.0}}, "eviction.budget"),
    ({"eviction": {"enabled": True, "pooling": 4}}, "eviction.pooling"),
    ({"eviction": {"enabled": True, "method": "threshold", "threshold": 0.01}}, "enable quantization"),
    ({"eviction": {"enabled": True, "method": "streaming", "head_budgets": "adaptive"}}, "eviction.head_budgets"),
    ({"quantization": {"enabled": True, "value_axis": "row"}}, "quantization.value_axis"),
    ({"quantization": {"enabled": True, "group_tokens": 32}}, "quantization.group_tokens"),
    ({"eviction": {"enabled": True}, "head_pruning": {"enabled": True}}, "head_pruning"),
    ({"eviction": {"enabled": True, "window": 3}}, "eviction.window: unknown key"),
    ({"value_pruning": {"enabled": True, "threshold": 1.0}}, "value_pruning.threshold"),
    ({"value_pruning": {"enabled": True, "threshold": 0.1, "relative_threshold": 0.1}}, "not both"),
    ({"value_pruning": {"enabled": True, "threshold": 0.01}, "head_pruning": {"enabled": True}}, "head_pruning"),
])
def test_bad_sections_name_the_key(section: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace(".", r"\.")):
        policy_from_dict({"name": "x", **section}, "x.yaml")

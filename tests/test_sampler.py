"""The token-budget sampler: budgets, order per seed and epoch, ranks, joined groups, resuming mid-epoch."""

import numpy as np

from translate.sampler import TokenBudgetSampler


def lengths(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, 40, n), rng.integers(1, 40, n)


def test_order_deterministic_per_seed_and_epoch():
    src, tgt = lengths()

    def order(seed, epoch):
        sampler = TokenBudgetSampler(src, tgt, max_tokens=200, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)


def test_ranks_get_disjoint_equal_shares():
    src, tgt = lengths()
    shares = [list(TokenBudgetSampler(src, tgt, 200, shuffle=True, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) > 0
    rows = [{i for batch in share for i in batch} for share in shares]
    assert not rows[0] & rows[1]
    whole = list(TokenBudgetSampler(src, tgt, 200, shuffle=True, seed=3))
    assert len(shares[0]) + len(shares[1]) >= len(whole) - 1  # at most the odd batch is dropped


def test_eval_ranks_decode_every_sentence_once():
    src, tgt = lengths()
    shares = [list(TokenBudgetSampler(src, tgt, 10_000, num_replicas=3, rank=r)) for r in range(3)]
    assert all(shares)  # one batch would hold everything, yet every rank has work
    rows = [i for share in shares for batch in share for i in batch]
    assert sorted(rows) == list(range(len(src)))


def test_oversized_example_gets_its_own_batch():
    batches = list(TokenBudgetSampler(np.array([3, 50, 4]), np.array([3, 5, 4]), max_tokens=20))
    assert sorted(map(sorted, batches)) == [[0, 2], [1]]


def test_resumed_sampler_continues_where_the_saved_run_stopped():
    src, tgt = np.arange(1, 61) % 13 + 1, np.arange(1, 61) % 7 + 1
    sampler = TokenBudgetSampler(src, tgt, 40, shuffle=True, seed=5)
    sampler.set_epoch(2)
    epoch2 = list(sampler)
    resumed = TokenBudgetSampler(src, tgt, 40, shuffle=True, seed=5)  # a fresh process: epoch 0 until told
    resumed.resume_at(2, 3)
    assert list(resumed) == epoch2[3:]
    assert len(resumed) == len(epoch2)  # Lightning counts the whole epoch from the saved batch
    resumed.set_epoch(3)
    later = list(resumed)
    assert len(later) == len(epoch2) and later != epoch2  # later epochs are whole again, freshly shuffled
    done = TokenBudgetSampler(src, tgt, 40, shuffle=True, seed=5)
    done.resume_at(2, len(epoch2))  # saved at the end of epoch 2: go on with epoch 3 from its start
    sampler.set_epoch(3)
    assert list(done) == list(sampler)


# Joined sentences: long inputs from any dataset.


def joined_epoch(src, tgt, epoch, seed=5, join=4):
    sampler = TokenBudgetSampler(src, tgt, 120, shuffle=True, seed=seed, join=join)
    sampler.set_epoch(epoch)
    return [[g.tolist() for g in batch] for batch in sampler]


def test_joined_groups_use_every_pair_once_deterministically_per_seed_and_epoch():
    src, tgt = lengths()
    epoch = joined_epoch(src, tgt, 0)
    pairs = [i for batch in epoch for group in batch for i in group]
    assert sorted(pairs) == list(range(len(src)))  # every pair once per epoch
    sizes = {len(group) for batch in epoch for group in batch}
    assert sizes == {1, 2, 3, 4}
    assert epoch == joined_epoch(src, tgt, 0)
    assert epoch != joined_epoch(src, tgt, 1) and epoch != joined_epoch(src, tgt, 0, seed=6)
    for batch in epoch:  # the budget holds for the joined lengths
        longest = max(max(src[g].sum(), tgt[g].sum() + 1) for g in map(np.array, batch))
        assert len(batch) * longest <= 120 or len(batch) == 1


def test_joined_sampler_resumes_mid_epoch():
    src, tgt = lengths(200)
    sampler = TokenBudgetSampler(src, tgt, 120, shuffle=True, seed=5, join=3)
    sampler.set_epoch(2)
    epoch2 = [[g.tolist() for g in b] for b in sampler]
    resumed = TokenBudgetSampler(src, tgt, 120, shuffle=True, seed=5, join=3)
    resumed.resume_at(2, 4)
    assert [[g.tolist() for g in b] for b in resumed] == epoch2[4:]

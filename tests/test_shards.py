"""Training on threads side by side (`train_threads`): shards of a batch, their summed gradients, determinism."""

import lightning as L
import pytest
import torch

from conftest import TINY, quiet_trainer, tiny_model
from translate.data import Batch
from translate.models import dropout
from translate.models.shards import sharded_loss
from translate.models.transformer import Attention
from translate.tokenizer import PAD_ID


def batch_of(lengths: list[tuple[int, int]], vocab: int = 40, seed: int = 0) -> Batch:
    """A right-padded batch with the given (source, target) lengths, bos = 2 and eos = 3."""
    g = torch.Generator().manual_seed(seed)
    b, s, t = len(lengths), max(sl for sl, _ in lengths), max(tl for _, tl in lengths) + 1
    src, tgt_in, tgt_out = (torch.full((b, n), PAD_ID) for n in (s, t, t))
    for i, (sl, tl) in enumerate(lengths):
        y = torch.randint(4, vocab, (tl,), generator=g)
        src[i, :sl] = torch.randint(4, vocab, (sl,), generator=g)
        tgt_in[i, 0], tgt_in[i, 1 : tl + 1] = 2, y
        tgt_out[i, :tl], tgt_out[i, tl] = y, 3
    return Batch(src, torch.tensor([sl for sl, _ in lengths]), tgt_in, tgt_out, torch.arange(b))


def test_split_deals_rows_round_robin_and_cuts_each_shard_to_its_longest():
    batch = batch_of([(2, 1), (3, 2), (5, 6), (4, 2), (1, 3)])
    shards = batch.split(2)
    assert [s.index.tolist() for s in shards] == [[0, 2, 4], [1, 3]]
    assert shards[1].src.shape == (2, 4) and shards[1].tgt_out.shape == (2, 3)  # longest: source 4, target 2 + eos
    assert shards[0].src.shape == (3, 5) and shards[0].tgt_in.shape == (3, 7)
    for shard in shards:
        rows = shard.index
        torch.testing.assert_close(shard.src, batch.src[rows, : shard.src.size(1)])
        torch.testing.assert_close(shard.tgt_out, batch.tgt_out[rows, : shard.tgt_out.size(1)])
        assert (batch.src[rows, shard.src.size(1) :] == PAD_ID).all()
        assert (batch.tgt_out[rows, shard.tgt_out.size(1) :] == PAD_ID).all()
    assert [len(s) for s in batch.split(8)] == [1] * 5  # never an empty shard
    assert batch.split(1)[0].src.shape == batch.src.shape


def gradients(model: torch.nn.Module, batch: Batch, threads: int) -> tuple[float, float, list[torch.Tensor]]:
    """(loss, nll, gradients) of one training loss on `batch`, in `threads` shards (1: the model's own loss)."""
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    if threads == 1:
        loss, nll, _ = model.loss(batch)
    else:
        loss, nll = sharded_loss(model.loss, batch, params, threads)
    (loss * 0.5).backward()  # a scale on the way in (as Lightning's accumulation divides) reaches the gradients
    return loss.item(), nll.item(), [p.grad.clone() for p in params]


@pytest.mark.parametrize("name", sorted(TINY))
def test_shards_give_the_whole_batch_loss_and_gradients(name):
    model = tiny_model(name, 40, label_smoothing=0.1).train()  # the tiny models have no dropout
    batch = batch_of([(3, 4), (5, 2), (6, 7), (2, 2), (7, 5)])
    loss, nll, whole = gradients(model, batch, 1)
    for threads in (2, 3):
        sharded_loss_value, sharded_nll, sharded = gradients(model, batch, threads)
        assert sharded_loss_value == pytest.approx(loss, rel=1e-5)
        assert sharded_nll == pytest.approx(nll, rel=1e-5)
        for a, b in zip(whole, sharded, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_sharded_dropout_is_deterministic_per_seed():
    cls, sizes = TINY["transformer"]
    model = cls(vocab_size=40, **{**sizes, "dropout": 0.3}).train()
    batch = batch_of([(3, 4), (5, 2), (6, 7), (2, 2)])
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(gradients(model, batch, 2)[2])
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2], strict=True))


def test_a_failing_shard_raises_and_the_thread_count_is_restored():
    threads = torch.get_num_threads()
    calls = []

    def loss_fn(batch: Batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("shard exploded")
        return torch.ones((), requires_grad=True), torch.ones(()), torch.tensor(1)

    with pytest.raises(RuntimeError, match="shard exploded"):
        sharded_loss(loss_fn, batch_of([(2, 2)] * 4), [torch.ones(1, requires_grad=True)], 2)
    assert torch.get_num_threads() == threads


def test_dropout_generator_scopes_the_masks_to_the_block():
    x = torch.ones(50, 50)
    with dropout.generator(torch.Generator().manual_seed(3)):
        a = dropout.dropout(x, 0.5, True)
    torch.manual_seed(0)
    with dropout.generator(torch.Generator().manual_seed(3)):
        b = dropout.dropout(x, 0.5, True)
    assert torch.equal(a, b)
    torch.manual_seed(0)
    c = dropout.dropout(x, 0.5, True)  # outside: torch's global generator again
    torch.manual_seed(0)
    assert torch.equal(c, dropout.dropout(x, 0.5, True)) and not torch.equal(a, c)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_with_its_own_weights_matches_scaled_dot_product_attention(causal):
    torch.manual_seed(0)
    attention = Attention(16, 4, dropout=0.0).eval()
    x = torch.randn(3, 5, 16)
    key, value = attention.keys_values(x)
    allowed = torch.tensor([[1, 1, 1, 0, 0], [1] * 5, [1, 0, 0, 0, 0]], dtype=torch.bool)[:, None, None]  # (B, 1, 1, S)
    mask = None if causal else allowed
    fused, _ = attention(x, key, value, mask=mask, causal=causal)
    explicit, weights = attention(x, key, value, mask=mask, causal=causal, need_weights=True)
    torch.testing.assert_close(fused, explicit)
    if causal:
        assert (weights.triu(1) == 0).all()


def fit_weights(dm, train_threads: int, seed: int) -> dict[str, torch.Tensor]:
    L.seed_everything(seed)
    cls, sizes = TINY["transformer"]
    model = cls(vocab_size=dm.vocab_size, **{**sizes, "dropout": 0.2}, train_threads=train_threads)
    quiet_trainer(4, accumulate_grad_batches=2, gradient_clip_val=1.0).fit(model, dm)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_on_two_threads_is_deterministic_and_trains(tiny_dm):
    threads = torch.get_num_threads()
    first, second = fit_weights(tiny_dm, 2, seed=5), fit_weights(tiny_dm, 2, seed=5)
    assert torch.get_num_threads() == threads
    assert all(torch.equal(first[k], second[k]) for k in first)
    L.seed_everything(5)
    start = TINY["transformer"][0](vocab_size=tiny_dm.vocab_size, **TINY["transformer"][1]).state_dict()
    assert not torch.equal(first["output.weight"], start["output.weight"])  # the updates reached the weights


def test_train_threads_below_one_is_refused():
    with pytest.raises(ValueError, match="train_threads must be at least 1"):
        tiny_model("gru", 40, train_threads=0)

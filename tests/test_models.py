"""The three models: learning, masking, attention, the one interface every model offers, and the CLI around them."""

import json

import lightning as L
import pytest
import torch

from conftest import CONFIGS, TINY, cli_args, make_pairs, quiet_trainer, run_cli, tiny_model, train_tiny, write_jsonl
from translate.batching import Batch
from translate.data import TranslationDataModule
from translate.models import GRUSeq2Seq, transformer
from translate.search import Decoder, Decoding, TranslationModel
from translate.tokenizer import BOS_ID, PAD_ID


def random_batch(vocab_size: int, lengths=(7, 4, 1), tgt_len: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab_size, (len(lengths), max(lengths)), generator=g)
    for i, n in enumerate(lengths):
        src[i, n:] = PAD_ID
    tgt = torch.randint(4, vocab_size, (len(lengths), tgt_len), generator=g)
    tgt[:, 0] = BOS_ID
    return src, torch.tensor(lengths), tgt


@pytest.mark.parametrize("name", list(TINY))
def test_overfits_tiny_task(name, tiny_dm, tmp_path):
    model, _ = train_tiny(name, tiny_dm)
    tester = L.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    (result,) = tester.test(model, tiny_dm, verbose=False)
    assert result["test/bleu"] > 90


@pytest.mark.parametrize("name", list(TINY))
def test_padding_does_not_change_real_logits(name):
    model = tiny_model(name, 50).eval()
    src, lengths, tgt = random_batch(50)
    with torch.no_grad():
        logits = model(src, lengths, tgt)
        padded = model(
            torch.nn.functional.pad(src, (0, 5), value=PAD_ID),
            lengths,
            torch.nn.functional.pad(tgt, (0, 3), value=PAD_ID),
        )
    assert padded.shape == (3, 9, 50)
    torch.testing.assert_close(padded[:, :6], logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(TINY))
def test_loss_is_the_cross_entropy_of_the_forward_logits(name):
    """The loss runs the output layer itself (fused, pad positions skipped): the same loss and gradients as
    label-smoothed cross-entropy on the logits of `forward`."""
    model = tiny_model(name, 50, label_smoothing=0.1).eval()  # no dropout: both passes see the same features
    src, lengths, tgt_in = random_batch(50)
    tgt_out = torch.cat([tgt_in[:, 1:], torch.full((3, 1), PAD_ID)], 1)
    tgt_out[2, 2:] = PAD_ID
    batch = Batch(src=src, src_lengths=lengths, tgt_in=tgt_in, tgt_out=tgt_out, index=torch.arange(3))
    loss, nll, tokens = model.loss(batch)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    logits = model(src, lengths, tgt_in).flatten(0, 1)  # (B*T, V)
    expected = torch.nn.functional.cross_entropy(logits, tgt_out.flatten(), ignore_index=PAD_ID, label_smoothing=0.1)
    expected_grads = torch.autograd.grad(expected, list(model.parameters()), allow_unused=True)
    assert tokens == 12
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, torch.nn.functional.cross_entropy(logits, tgt_out.flatten(), ignore_index=PAD_ID))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        if expected_grad is None:
            assert grad is None or torch.all(grad == 0)
        else:
            torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(TINY))
def test_decode_steps_match_teacher_forcing(name):
    """The decoding interface gives the same log-probabilities as the full forward pass."""
    model = tiny_model(name, 50).eval()
    src, lengths, tgt = random_batch(50)
    with torch.no_grad():
        full = model(src, lengths, tgt).log_softmax(-1)  # (B, T, V)
        state = model.encode(src, lengths)
        for t in range(tgt.size(1)):
            step, state = model.decode_step(tgt[:, t : t + 1], state)
            torch.testing.assert_close(step, full[:, t], atol=1e-4, rtol=1e-4)


def test_reorder_picks_rows_of_the_state():
    model = tiny_model("transformer", 50).eval()
    src, lengths, tgt = random_batch(50)
    with torch.no_grad():
        state = model.encode(src, lengths)
        _, state = model.decode_step(tgt[:, :1], state)
        picked = model.reorder(state, torch.tensor([2, 0]))
        step, _ = model.decode_step(tgt[[2, 0], 1:2], picked)
        alone, _ = model.decode_step(tgt[:, 1:2], state)
    torch.testing.assert_close(step, alone[[2, 0]])


def test_transformer_attention_never_asks_for_cudnns_backend(monkeypatch):
    """cuDNN's attention builds a graph per new shape (on an H200, 536 ms a training step's attentions against 1.8):
    training and decoding call scaled_dot_product_attention with it disabled, and leave the global setting as it was."""
    enabled = []

    def recording(*args, **kwargs):
        enabled.append(torch.backends.cuda.cudnn_sdp_enabled())
        return sdpa(*args, **kwargs)

    sdpa = transformer.F.scaled_dot_product_attention
    monkeypatch.setattr(transformer.F, "scaled_dot_product_attention", recording)
    model = tiny_model("transformer", 50)
    src, lengths, tgt = random_batch(50)
    model(src, lengths, tgt).sum().backward()
    with torch.no_grad():
        model.eval().decode_step(tgt[:, :1], model.encode(src, lengths))
    assert len(enabled) == 2 * (2 + 2 * 2) and not any(enabled)  # 2 encoder and 2 decoder layers, trained and decoded
    assert torch.backends.cuda.cudnn_sdp_enabled()


@pytest.mark.parametrize("name", ["bahdanau", "transformer"])
def test_attention_weights(name):
    model = tiny_model(name, 50).eval()
    src, lengths, tgt = random_batch(50)
    with torch.no_grad():
        _, weights = model(src, lengths, tgt, need_weights=True)
    assert weights.shape == (3, 6, 7)  # (batch, tgt_len, src_len)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6))
    assert weights[1, :, 4:].abs().max() == 0 and weights[2, :, 1:].abs().max() == 0  # padding gets none


def test_gru_decoder_sees_only_the_context_vector():
    """The only thing the GRU decoder gets from the encoder: one vector per sentence (no per-position states)."""
    model = tiny_model("gru", 50).eval()
    src, lengths, _tgt = random_batch(50)
    with torch.no_grad():
        state = model.encode(src, lengths)
        assert set(state) == {"context", "hidden"} and state["context"].shape == (3, 128)


@pytest.mark.parametrize("name", list(TINY))
def test_every_model_offers_the_one_interface(name):
    """What callers ask of a model without inspecting its class (search.TranslationModel), and search's Decoder."""
    model = tiny_model(name, 50).eval()
    assert isinstance(model, TranslationModel) and isinstance(model, Decoder)
    assert model.architecture == type(model).__name__ and model.test_bleu is None
    assert model.num_parameters == sum(p.numel() for p in model.parameters())
    assert (model.has_attention, model.has_context_vector) == ((False, True) if name == "gru" else (True, False))
    assert model.for_inference(torch.device("cpu")) is model and not model.training
    src, lengths, _tgt = random_batch(50)
    with torch.no_grad():
        vectors = model.context_vector(src, lengths)
        (best,) = model.generate(src[:1], lengths[:1], Decoding(beam_size=2), attention=True)[0]
    assert (vectors is not None and vectors.shape[0] == 3) == model.has_context_vector
    assert (best.attention is not None) == model.has_attention
    limit = 1024 if name == "transformer" else 2000  # the Transformer's positions
    assert model.source_limit(Decoding(max_source_length=2000)) == limit


def test_attach_gives_what_a_model_translates_with_and_refuses_another_vocabulary_or_direction(tiny_dm):
    model = tiny_model("gru", tiny_dm.vocab_size)
    assert model.attach(tiny_dm.tokenizer, ("de", "en"), Decoding(beam_size=2)) is model
    assert model.tokenizer == tiny_dm.tokenizer and model.languages == ("de", "en")
    assert model.decoding == Decoding(beam_size=2)
    with pytest.raises(ValueError, match="the model was trained on de→en but the test file is en→de"):
        model.attach(languages=["en", "de"], source="the test file")
    with pytest.raises(ValueError, match="the model has a vocabulary of 50 but the test file has"):
        tiny_model("gru", 50).attach(tiny_dm.tokenizer, source="the test file")


# -- the CLI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TINY))
def test_cli_fit_fast_dev_run_then_test_and_predict(name, tiny_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = cli_args(name, tiny_corpus, tmp_path / "cache")
    run_cli("fit", *args, "--trainer.fast_dev_run=true")
    assert not (tmp_path / "checkpoints").exists()  # a smoke run writes no checkpoint
    run_cli("fit", *args, "--trainer.max_steps=2", "--trainer.limit_val_batches=1")
    assert (tmp_path / "checkpoints" / name / "last.ckpt").exists()
    decoding = ["--decoding.beam_size=2", "--decoding.alpha=0.3"]  # the checkpoint has 5 and the config's alpha
    run_cli("test", *args, *decoding, f"--ckpt_path={tmp_path / 'checkpoints' / name / 'last.ckpt'}")
    out = capsys.readouterr()
    assert "test: BLEU = " in out.out + out.err
    (results,) = tmp_path.glob(f"logs/{name}/version_*/{name}-*/test/record.json")  # an evaluation record
    record = json.loads(results.read_text())
    assert record["test_set"]["sentences"] == 50 and record["scores"]["signature"].startswith("nrefs:1")
    assert (record["decoding"]["beam_size"], record["decoding"]["alpha"]) == (2, 0.3)
    assert record["model"]["checkpoint"] == str(tmp_path / "checkpoints" / name / "last.ckpt")
    run_cli("predict", *args, *decoding, f"--ckpt_path={tmp_path / 'checkpoints' / name / 'last.ckpt'}")
    (predictions,) = tmp_path.glob(f"logs/{name}/version_*/test_predictions.txt")
    assert predictions.read_text() == (results.parent / "hypotheses.txt").read_text()  # decoded as in test
    assert len(predictions.read_text().splitlines()) == 50
    assert list(tmp_path.glob(f"logs/tensorboard/{name}/version_*/events.out.tfevents.*"))  # TensorBoard's curves


def test_cli_tests_a_checkpoint_with_the_command_lines_decoding_and_truncates_long_sources(tmp_path, monkeypatch):
    """A checkpoint tests with the decoding the command line gives; a test source longer than the Transformer's
    positions is truncated, not a crash."""
    monkeypatch.chdir(tmp_path)
    pairs = make_pairs(400, seed=0, max_words=6)
    long = {"de": " ".join(p["de"] for p in pairs[:12]), "en": " ".join(p["en"] for p in pairs[:12])}
    for split, rows in (("train", pairs), ("validation", pairs[:20]), ("test", [*pairs[:20], long])):
        write_jsonl(tmp_path / "corpus" / f"{split}.jsonl", rows)
    args = [*cli_args("transformer", tmp_path / "corpus", tmp_path / "cache"), "--model.init_args.max_positions=24"]
    run_cli("fit", *args, "--trainer.max_steps=2", "--trainer.limit_val_batches=0")
    last = tmp_path / "checkpoints/transformer/last.ckpt"
    with pytest.warns(UserWarning, match="longer than 24 tokens truncated"):
        run_cli("test", *args, "--decoding.beam_size=2", f"--ckpt_path={last}")
    (results,) = tmp_path.glob("logs/transformer/version_*/*/test/record.json")
    record = json.loads(results.read_text())
    assert record["test_set"]["sentences"] == 21 and record["decoding"]["beam_size"] == 2


def test_checkpoint_carries_tokenizer_and_class(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli_args("gru", tiny_corpus, tmp_path / "cache")
    run_cli("fit", *args, "--trainer.max_steps=1", "--trainer.limit_val_batches=1")
    checkpoint = torch.load(tmp_path / "checkpoints/gru/last.ckpt", weights_only=False)
    assert checkpoint["model_class"] == "translate.models.gru.GRUSeq2Seq"
    assert checkpoint["hyper_parameters"]["vocab_size"] == len(checkpoint["state_dict"]["tgt_embed.weight"])
    model = GRUSeq2Seq.load_from_checkpoint(tmp_path / "checkpoints/gru/last.ckpt")
    assert model.tokenizer is not None and model.tokenizer.decode(model.tokenizer.encode(["der Hund"])) == ["der Hund"]


def test_print_config(capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", f"--config={CONFIGS / 'transformer.yaml'}", "--print_config")
    assert "class_path: translate.models.TransformerSeq2Seq" in capsys.readouterr().out


def test_optimizer_is_torchs_fused_adamw_on_cpu():
    optimizer = tiny_model("transformer", 50).configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"]


def test_bf16_mixed_training_clips_gradients(tiny_dm):
    """The configs clip gradients; Lightning allows that under mixed precision only for an optimizer that does not
    unscale gradients itself, so there AdamW is not the fused one."""
    model = tiny_model("transformer", tiny_dm.vocab_size)
    trainer = L.Trainer(
        max_steps=2,
        precision="bf16-mixed",
        gradient_clip_val=1.0,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(model, tiny_dm)
    assert trainer.global_step == 2 and not trainer.optimizers[0].defaults["fused"]
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_training_refuses_joined_examples_beyond_the_positions(tiny_corpus, tmp_path):
    dm = TranslationDataModule(dataset=str(tiny_corpus), cache_dir=str(tmp_path), vocab_size=400, join=4)
    model = tiny_model("transformer", dm.vocab_size, max_positions=20)
    with pytest.raises(ValueError, match=r"training examples reach \d+ tokens \(data.join=4 .*20 positions"):
        quiet_trainer(5).fit(model, dm)


def test_a_model_trained_on_joined_pairs_translates_joined_sentences(tiny_corpus, tmp_path):
    dm = TranslationDataModule(dataset=str(tiny_corpus), cache_dir=str(tmp_path), vocab_size=400, join=3, eval_join=3)
    model, _ = train_tiny("transformer", dm, steps=300)
    tester = L.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    (result,) = tester.test(model, dm, verbose=False)
    assert len(dm.sources("test")) == 16 and len(dm.sources("test")[0].split()) > 3
    assert result["test/bleu"] > 50  # an untrained model scores ~0

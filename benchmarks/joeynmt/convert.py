"""Our Transformer as a JoeyNMT 2.3.0 model: it is JoeyNMT's pre-norm Transformer layer for layer (sinusoidal
positions, scaled tied embeddings, final layer norms), so a checkpoint converts into a JoeyNMT checkpoint, vocabulary
and SentencePiece model with the same weights."""

from pathlib import Path

import torch
import yaml

from translate.models.transformer import TransformerSeq2Seq, sinusoids
from translate.tokenizer import PAD_ID, UNK_ID

JOEY_UNK, JOEY_PAD = 0, 1  # JoeyNMT puts <unk> first; we put <pad> first. bos 2 and eos 3 agree.


def joey_ids(vocab_size: int) -> torch.Tensor:
    """For each JoeyNMT id, our id: the identity except that pad and unk swap."""
    order = torch.arange(vocab_size)
    order[JOEY_UNK], order[JOEY_PAD] = UNK_ID, PAD_ID
    return order


def joey_state(ours: dict[str, torch.Tensor], layers: tuple[int, int], vocab_size: int) -> dict[str, torch.Tensor]:
    """Our TransformerSeq2Seq state dict renamed (and vocabulary rows permuted) into JoeyNMT's Model."""
    rows = joey_ids(vocab_size)
    state = {
        "src_embed.lut.weight": ours["src_embed.weight"][rows],
        "trg_embed.lut.weight": ours["tgt_embed.weight"][rows],
        "decoder.output_layer.weight": ours["output.weight"][rows],
        "encoder.layer_norm.weight": ours["encoder_norm.weight"],
        "encoder.layer_norm.bias": ours["encoder_norm.bias"],
        "decoder.layer_norm.weight": ours["decoder_norm.weight"],
        "decoder.layer_norm.bias": ours["decoder_norm.bias"],
    }
    dim = ours["src_embed.weight"].size(1)
    state["encoder.pe.pe"] = state["decoder.pe.pe"] = sinusoids(5000, dim).unsqueeze(0)  # JoeyNMT's table size

    def attention(ours_prefix: str, joey_prefix: str) -> None:
        for kind in ("weight", "bias"):
            key, value = ours[f"{ours_prefix}.key_value.{kind}"].chunk(2, 0)
            state[f"{joey_prefix}.k_layer.{kind}"], state[f"{joey_prefix}.v_layer.{kind}"] = key, value
            state[f"{joey_prefix}.q_layer.{kind}"] = ours[f"{ours_prefix}.query.{kind}"]
            state[f"{joey_prefix}.output_layer.{kind}"] = ours[f"{ours_prefix}.out.{kind}"]

    def copy(pairs: dict[str, str], ours_prefix: str, joey_prefix: str) -> None:
        for mine, theirs in pairs.items():
            for kind in ("weight", "bias"):
                state[f"{joey_prefix}.{theirs}.{kind}"] = ours[f"{ours_prefix}.{mine}.{kind}"]

    feed_forward = {"ff.0": "feed_forward.pwff_layer.0", "ff.3": "feed_forward.pwff_layer.3"}
    for i in range(layers[0]):
        attention(f"encoder.{i}.attention", f"encoder.layers.{i}.src_src_att")
        copy(
            {"norm1": "layer_norm", "norm2": "feed_forward.layer_norm", **feed_forward},
            f"encoder.{i}",
            f"encoder.layers.{i}",
        )
    for i in range(layers[1]):
        attention(f"decoder.{i}.self_attention", f"decoder.layers.{i}.trg_trg_att")
        attention(f"decoder.{i}.cross_attention", f"decoder.layers.{i}.src_trg_att")
        norms = {"norm1": "x_layer_norm", "norm2": "dec_layer_norm", "norm3": "feed_forward.layer_norm"}
        copy({**norms, **feed_forward}, f"decoder.{i}", f"decoder.layers.{i}")
    return {name: tensor.contiguous().clone() for name, tensor in state.items()}


def convert(model: TransformerSeq2Seq, peer_config: Path, out: Path, beam_size: int, alpha: float) -> Path:
    """Write JoeyNMT's checkpoint, vocabulary, SentencePiece model and test config (`peer_config` decoding the test
    split with `beam_size` and `alpha`) for `model` into `out`."""
    hp, tokenizer = model.hparams, model.tokenizer
    out.mkdir(parents=True, exist_ok=True)
    (out / "sp.model").write_bytes(tokenizer.to_bytes())
    pieces = tokenizer.pieces(joey_ids(tokenizer.vocab_size).tolist())
    (out / "vocab.txt").write_text("".join(p + "\n" for p in pieces), encoding="utf-8")
    if (out / "vocab.txt").read_text(encoding="utf-8").splitlines() != pieces:
        raise SystemExit("a SentencePiece piece does not survive JoeyNMT's one-piece-per-line vocabulary file")
    layers = (hp.encoder_layers, hp.decoder_layers)
    torch.save({"model_state": joey_state(model.state_dict(), layers, tokenizer.vocab_size)}, out / "model.ckpt")

    config = yaml.safe_load(peer_config.read_text())
    config["model_dir"] = str(out)
    config["data"].pop("dev", None)  # decode the test split only
    for side in ("src", "trg"):
        config["data"][side]["voc_file"] = str(out / "vocab.txt")
        config["data"][side]["tokenizer_cfg"]["model_file"] = str(out / "sp.model")
    config["testing"]["load_model"] = str(out / "model.ckpt")
    config["testing"].update(beam_size=beam_size, beam_alpha=alpha)
    sizes = {"hidden_size": hp.d_model, "ff_size": hp.ff_dim, "num_heads": hp.heads}
    for part, n in zip(("encoder", "decoder"), layers, strict=True):
        config["model"][part].update(sizes, num_layers=n)
        config["model"][part]["embeddings"]["embedding_dim"] = hp.d_model
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out / "config.yaml"

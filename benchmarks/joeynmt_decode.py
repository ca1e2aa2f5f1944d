"""Beam-5 decoding of the Multi30k test split by JoeyNMT 2.3.0 and by us, with the *same* trained weights.

Our Transformer is JoeyNMT's pre-norm Transformer layer for layer (sinusoidal positions, scaled tied
embeddings, final layer norms), so our checkpoint converts into a JoeyNMT checkpoint, vocabulary and
SentencePiece model. Both decoders then translate the same 1,000 sentences with the same model, beam 5
and alpha 1.0, one after the other on this machine: the time difference is the decoder's alone, and the
two outputs (and BLEU) agree except where float rounding or the length limit breaks a tie.

    ../shared/peers/joeynmt/setup.sh ../peer-joeynmt          # JoeyNMT's venv and config, outside the repo
    python benchmarks/joeynmt_decode.py --checkpoint checkpoints/transformer/<best>.ckpt

JoeyNMT's time is its own "Generation took" for the test set (model loading excluded); ours is
`Translator.translate` after a warm-up, at JoeyNMT's decoding batch (2,048 tokens) and at our default.
"""

import argparse
import re
import subprocess
import time
from pathlib import Path

import sacrebleu
import torch
import yaml
from common import write_results

from translate import TranslationDataModule, Translator
from translate.models.transformer import TransformerSeq2Seq, sinusoids
from translate.tokenizer import PAD_ID, UNK_ID

JOEY_UNK, JOEY_PAD = 0, 1  # JoeyNMT puts <unk> first; we put <pad> first. bos 2 and eos 3 agree.
BEAM_SIZE, ALPHA = 5, 1.0  # both decoders' (JoeyNMT's testing section, our Translator's arguments)


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


def convert(model: TransformerSeq2Seq, peer_config: Path, out: Path) -> Path:
    """Write JoeyNMT's checkpoint, vocabulary, SentencePiece model and test config for `model` into `out`."""
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
    config["testing"].update(beam_size=BEAM_SIZE, beam_alpha=ALPHA)
    sizes = {"hidden_size": hp.d_model, "ff_size": hp.ff_dim, "num_heads": hp.heads}
    for part, n in zip(("encoder", "decoder"), layers, strict=True):
        config["model"][part].update(sizes, num_layers=n)
        config["model"][part]["embeddings"]["embedding_dim"] = hp.d_model
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out / "config.yaml"


def joeynmt_decode(venv_python: Path, config: Path) -> dict:
    out = config.parent
    start = time.perf_counter()
    run = [str(venv_python), "-m", "joeynmt", "test", str(config), "--output-path", str(out / "hyp")]
    done = subprocess.run(run, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (out / "test.log").write_text(done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"joeynmt test failed, see {out / 'test.log'}:\n{done.stderr[-3000:]}")
    generation = re.findall(r"Generation took ([\d.]+)\[sec\]", done.stdout + done.stderr)
    hypotheses = (out / "hyp.test").read_text(encoding="utf-8").splitlines()
    return {
        "test_decode_seconds": round(float(generation[-1]), 2),
        "process_wall_seconds": round(wall, 1),
        "hypotheses": hypotheses,
    }


def our_decode(translator: Translator, sources: list[str], max_tokens: int) -> dict:
    translator.translate(sources[:16], beam_size=BEAM_SIZE)  # warm-up
    start = time.perf_counter()
    hypotheses = translator.translate(
        sources, beam_size=BEAM_SIZE, alpha=ALPHA, max_tokens=max_tokens, split_sentences=False
    )
    return {
        "max_tokens": max_tokens,
        "test_decode_seconds": round(time.perf_counter() - start, 2),
        "hypotheses": hypotheses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="our Transformer checkpoint")
    parser.add_argument("--joeynmt", type=Path, default=Path("../peer-joeynmt"), help="setup.sh's work folder")
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--max-tokens", type=int, nargs="+", default=[2048, 8192], help="our decoding batch sizes")
    args = parser.parse_args()

    data = TranslationDataModule(dataset=args.dataset)
    sources, references = data.sources("test"), data.references("test")
    joey_test = [line.rstrip("\n") for line in (args.joeynmt / "data" / "test.de").open(encoding="utf-8")]
    if joey_test != sources:
        raise SystemExit(f"{args.joeynmt / 'data' / 'test.de'} is not the test split of {args.dataset}")
    translator = Translator.from_checkpoint(args.checkpoint, device="cpu")
    if not isinstance(translator.model, TransformerSeq2Seq) or translator.model.max_positions > 5000:
        raise SystemExit(f"{args.checkpoint}: JoeyNMT takes our Transformer only")
    config = convert(translator.model, args.joeynmt / "transformer.yaml", args.joeynmt / "ours")
    runs = {"joeynmt": joeynmt_decode(args.joeynmt / "venv" / "bin" / "python", config)}
    for max_tokens in args.max_tokens:
        runs[f"translate_{max_tokens}"] = our_decode(translator, sources, max_tokens)

    joey_hypotheses = runs["joeynmt"]["hypotheses"]
    for run in runs.values():
        hypotheses = run.pop("hypotheses")
        run["test_sacrebleu"] = round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2)
        run["same_output_as_joeynmt"] = sum(a == b for a, b in zip(hypotheses, joey_hypotheses, strict=True))
    slowest = max(run["test_decode_seconds"] for name, run in runs.items() if name != "joeynmt")
    decoding = translator.model.decoding  # the checkpoint's; beam and alpha are overridden above
    results = {
        "checkpoint": args.checkpoint,
        "beam_size": BEAM_SIZE,
        "alpha": ALPHA,
        "joeynmt_max_output_length": yaml.safe_load(config.read_text())["testing"].get("max_output_length"),
        "our_max_length": f"{decoding.max_len_ratio} x source + {decoding.max_len_extra}",
        "runs": runs,
        "speedup_worst_case": round(runs["joeynmt"]["test_decode_seconds"] / slowest, 2),
    }
    table = (
        f"| decoder (same weights, beam {BEAM_SIZE}, alpha {ALPHA}) | test decode (s) | speedup | sacreBLEU "
        "| same output as JoeyNMT |"
    )
    table += "\n|---|---|---|---|---|\n"
    for name, run in runs.items():
        label = (
            "JoeyNMT 2.3.0 (batch 2,048 tokens)" if name == "joeynmt" else f"translate, max_tokens {run['max_tokens']}"
        )
        speedup = runs["joeynmt"]["test_decode_seconds"] / run["test_decode_seconds"]
        same = f"{run['same_output_as_joeynmt']} / {len(sources)}"
        table += f"| {label} | {run['test_decode_seconds']} | {speedup:.2f}x | {run['test_sacrebleu']} | {same} |\n"
    print(table)
    write_results("joeynmt_decode", results, table)


if __name__ == "__main__":
    main()

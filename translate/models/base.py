"""What all three models share: loss, optimisation, metrics, decoding and checkpoint contents.

A subclass builds its layers and implements

    features(src, src_lengths, tgt_in) -> (B, T, E), weights    teacher-forced input of `self.output`
    encode / decode_step / reorder                                the decoding interface (search.py)

and nothing else; `output` is its output layer (an `nn.Linear` E -> V), which the loss fuses with the
cross-entropy.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import sacrebleu
import torch
from sacrebleu.metrics.base import Signature
from sacrebleu.metrics.bleu import BLEUScore
from sacrebleu.metrics.chrf import CHRFScore
from torch import Tensor

from translate.data import Batch
from translate.files import atomic_write_bytes
from translate.machine import machine
from translate.models.loss import output_cross_entropy
from translate.models.shards import sharded_loss
from translate.search import Hypothesis, State, beam_search, greedy_search
from translate.tokenizer import PAD_ID, SharedTokenizer

Scheduler = Literal["inverse_sqrt", "linear", "plateau", "constant"]


def check_languages(trained: Sequence[str] | None, given: Sequence[str] | None, model: str, data: str) -> None:
    """Refuse data in another direction (source, target) than the model was trained on; None is unknown."""
    if trained and given and tuple(trained) != tuple(given):
        raise ValueError(f"{model} was trained on {'→'.join(trained)} but {data} is {'→'.join(given)}")


class Seq2SeqModule(L.LightningModule):
    """Base LightningModule of the three translation models.

    Args:
        vocab_size / pad_id: of the joint tokenizer (linked from the datamodule by the CLI).
        label_smoothing: of the token-level cross-entropy.
        lr / betas / weight_decay: AdamW (torch's fused kernel on CPU and CUDA: one pass over all
            parameters instead of a loop of small ops per tensor; its foreach version under mixed
            precision, where Lightning clips gradients only for optimizers that do not unscale them).
        scheduler: ``inverse_sqrt`` (linear warm-up over ``warmup_steps``, then 1/sqrt(step)),
            ``linear`` (the same warm-up, then a straight line down to zero at the trainer's last step,
            for a fixed budget of epochs), ``plateau`` (halve the rate when val/bleu stops rising for
            ``patience`` epochs) or ``constant``.
        max_len_ratio / max_len_extra: decoded output is at most ratio * source length + extra tokens
            (and at most `max_output_length`, for a model that has such a limit).
        beam_size / alpha: beam search at test time (validation decodes greedily); alpha is the GNMT
            length penalty exponent.
        max_source_length: longer inputs to the Translator are truncated to this many tokens.
        train_threads: on the CPU, each training batch is split by sentence into this many shards whose
            forward and backward passes run side by side, one thread each, with torch's intra-op threads
            divided among them (models/shards.py); 1: the whole batch on torch's intra-op threads. Results
            stay deterministic per seed, except for an `nn.GRU` with layers > 1, whose own dropout draws
            from torch's shared generator. Ignored on other devices.
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = PAD_ID,
        label_smoothing: float = 0.1,
        lr: float = 5e-4,
        betas: tuple[float, float] = (0.9, 0.98),
        weight_decay: float = 0.0,
        scheduler: Scheduler = "constant",
        warmup_steps: int = 1000,
        patience: int = 1,
        max_len_ratio: float = 1.5,
        max_len_extra: int = 10,
        beam_size: int = 5,
        alpha: float = 1.0,
        max_source_length: int = 256,
        train_threads: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if train_threads < 1:
            raise ValueError(f"train_threads must be at least 1, got {train_threads}")
        if pad_id != PAD_ID:
            raise ValueError(f"pad_id {pad_id} differs from the tokenizer's fixed pad id {PAD_ID}")
        self.vocab_size, self.pad_id = vocab_size, pad_id
        self.tokenizer: SharedTokenizer | None = None
        self.languages: tuple[str, str] | None = None  # (source, target) of the training data
        self._hypotheses: dict[int, list[int]] = {}
        self.keep_attention = False  # decode_step records attention weights in the state when set
        self._resumed_rng_state: Tensor | None = None

    # -- what a subclass provides ------------------------------------------------------------------

    output: torch.nn.Linear
    max_output_length: int | None = None  # the longest output the model can decode (the Transformer's positions)

    def features(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced input of the output layer (B, T, E); with `need_weights`, also the attention
        over the source (B, T, S), None for a model without attention."""
        raise NotImplementedError

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor | None]:
        """Teacher-forced logits (B, T, V); with `need_weights`, also the attention of :meth:`features`."""
        features, weights = self.features(src, src_lengths, tgt_in, need_weights)
        logits = self.output(features)  # (B, T, V)
        return (logits, weights) if need_weights else logits

    def encode(self, src: Tensor, src_lengths: Tensor) -> State:
        raise NotImplementedError

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError

    def reorder(self, state: State, indices: Tensor) -> State:
        """Keep rows `indices` of every batch-first tensor in the state (a dict, possibly of lists)."""
        if isinstance(state, Tensor):
            return state.index_select(0, indices)
        if isinstance(state, dict):
            return {key: self.reorder(value, indices) for key, value in state.items()}
        if isinstance(state, list):
            return [self.reorder(value, indices) for value in state]
        return state

    @staticmethod
    def source_mask(src: Tensor, src_lengths: Tensor) -> Tensor:
        """True at real source positions (B, S); an empty source keeps its first (pad) position."""
        return torch.arange(src.size(1), device=src.device) < src_lengths.clamp(min=1).unsqueeze(1)

    # -- loss --------------------------------------------------------------------------------------

    def loss(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """Label-smoothed cross-entropy per target token, pad ignored; also the plain NLL for
        perplexity. Returns (loss, nll, number of target tokens). The output layer runs inside the loss,
        on the non-pad positions only (models/loss.py)."""
        features, _ = self.features(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, E)
        output, eps = self.output, self.hparams.label_smoothing
        return output_cross_entropy(features, output.weight, output.bias, batch.tgt_out, self.pad_id, eps)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        if self.hparams.train_threads > 1 and self.device.type == "cpu":
            params = [p for p in self.parameters() if p.requires_grad]
            loss, nll = sharded_loss(self.loss, batch, params, self.hparams.train_threads)
        else:
            loss, nll, _tokens = self.loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step}: stopping "
                "(no checkpoint is written from this state; the last good one is kept). "
                "Try a lower lr, more warm-up, or precision 32."
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("train/ppl", nll.exp(), batch_size=len(batch))
        return loss

    # -- decoding and BLEU -------------------------------------------------------------------------

    def generate(
        self, src: Tensor, src_lengths: Tensor, beam_size: int = 1, alpha: float = 1.0, n_best: int = 1
    ) -> list[list[Hypothesis]]:
        """The `n_best` translations of each source in a batch: greedy for beam size 1, else beam search."""
        limits = {
            "max_len_ratio": self.hparams.max_len_ratio,
            "max_len_extra": self.hparams.max_len_extra,
            "max_len_cap": self.max_output_length,
        }
        if beam_size == 1:
            return [[h] for h in greedy_search(self, src, src_lengths, **limits)]
        return beam_search(self, src, src_lengths, beam_size, alpha, n_best, **limits)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, nll, tokens = self.loss(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=int(tokens), sync_dist=True)
        self.log("val/ppl", nll.exp(), batch_size=int(tokens), sync_dist=True)
        self._collect(batch)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._collect(batch, self.hparams.beam_size, self.hparams.alpha)

    def predict_step(self, batch: Batch, batch_idx: int) -> list[str]:
        """Translations of a batch of the datamodule's `predict_split`, decoded as in test, in batch order."""
        return self.tokenizer.decode(self._collect(batch, self.hparams.beam_size, self.hparams.alpha))

    def _collect(self, batch: Batch, beam_size: int = 1, alpha: float = 1.0) -> list[list[int]]:
        """Decode a batch, keep its best hypotheses by corpus row, and return them in batch order."""
        best = [hyps[0].tokens for hyps in self.generate(batch.src, batch.src_lengths, beam_size, alpha)]
        self._hypotheses.update(zip(batch.index.tolist(), best, strict=True))
        return best

    def on_validation_epoch_start(self) -> None:
        self._hypotheses = {}

    def on_test_epoch_start(self) -> None:
        self._hypotheses = {}
        self._test_start = time.perf_counter()

    def on_predict_epoch_start(self) -> None:
        self._hypotheses = {}

    def _gathered(self) -> dict[int, list[int]]:
        """Every rank's hypotheses by corpus row: each rank decoded a disjoint share of the split."""
        if self.trainer.world_size == 1:
            return self._hypotheses
        shares: list[dict[int, list[int]]] = [{} for _ in range(self.trainer.world_size)]
        torch.distributed.all_gather_object(shares, self._hypotheses)
        gathered = {row: tokens for share in shares for row, tokens in share.items()}
        if len(gathered) != sum(len(share) for share in shares):
            raise RuntimeError("some sentences were decoded on more than one rank: the eval sampler overlaps")
        return gathered

    def _score(self, split: str) -> tuple[list[str], BLEUScore, CHRFScore, Signature]:
        """Detokenized hypotheses of all ranks in corpus order, with their sacreBLEU BLEU and chrF."""
        gathered = self._gathered()
        rows = sorted(gathered)
        hypotheses = self.tokenizer.decode([gathered[i] for i in rows])
        references = self.trainer.datamodule.references(split)
        references = [references[i] for i in rows]
        bleu = sacrebleu.BLEU()
        bleu_score = bleu.corpus_score(hypotheses, [references])
        chrf_score = sacrebleu.CHRF().corpus_score(hypotheses, [references])
        return hypotheses, bleu_score, chrf_score, bleu.get_signature()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        _, bleu, _, _ = self._score("validation")
        self.log("val/bleu", bleu.score, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        hypotheses, bleu, chrf, signature = self._score("test")
        self.log("test/bleu", bleu.score)
        self.log("test/chrf", chrf.score)
        out = Path(self.trainer.log_dir or ".")  # a collective call under DDP: every rank makes it
        if not self.trainer.is_global_zero:
            return
        atomic_write_bytes(out / "test_hypotheses.txt", "".join(h + "\n" for h in hypotheses).encode())
        result = {
            "model": type(self).__name__,
            "checkpoint": self.trainer.ckpt_path,
            "parameters": sum(p.numel() for p in self.parameters()),
            "bleu": bleu.score,
            "chrf": chrf.score,
            "signature": str(signature),
            "bleu_text": str(bleu),
            "sentences": len(hypotheses),
            "beam_size": self.hparams.beam_size,
            "alpha": self.hparams.alpha,
            "decode_seconds": round(time.perf_counter() - self._test_start, 1),
        }
        atomic_write_bytes(out / "test_results.json", (json.dumps(result, indent=2) + "\n").encode())
        self.print(f"test: {bleu}\ntest: {chrf}\nsignature: {signature}\nhypotheses: {out / 'test_hypotheses.txt'}")

    def on_predict_epoch_end(self) -> None:
        """Write the translations of the whole split, one line per source in corpus order, beside the logs."""
        gathered = self._gathered()
        split = self.trainer.datamodule.predict_split
        out = Path(self.trainer.log_dir or ".") / f"{split}_predictions.txt"  # a collective call under DDP
        if not self.trainer.is_global_zero:
            return
        translations = self.tokenizer.decode([gathered[i] for i in sorted(gathered)])
        atomic_write_bytes(out, "".join(t + "\n" for t in translations).encode())
        self.print(f"predict: {len(translations)} sentences of the {split!r} split translated: {out}")

    # -- optimisation ------------------------------------------------------------------------------

    def on_train_start(self) -> None:
        if self._resumed_rng_state is not None:
            torch.set_rng_state(self._resumed_rng_state)
            self._resumed_rng_state = None

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        # Lightning refuses to clip the gradients of a fused optimizer under mixed precision (it would unscale them)
        mixed = self._trainer is not None and str(self._trainer.precision).endswith("-mixed")
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=hp.lr,
            betas=tuple(hp.betas),
            weight_decay=hp.weight_decay,
            fused=self.device.type in ("cpu", "cuda") and not mixed,
        )
        if hp.scheduler == "constant":
            return {"optimizer": optimizer}
        if hp.scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=0.5, patience=hp.patience
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "val/bleu"}}
        warmup = max(1, hp.warmup_steps)
        total = self.trainer.estimated_stepping_batches if hp.scheduler == "linear" else math.inf
        if hp.scheduler == "linear" and math.isinf(total):
            raise ValueError("scheduler 'linear' needs a finite number of steps: set trainer.max_epochs or max_steps")
        if hp.scheduler == "linear" and warmup >= total:
            raise ValueError(
                f"scheduler 'linear' warms up over {warmup} steps but the run has only {total}: "
                "lower model.warmup_steps or train longer"
            )

        def factor(step: int) -> float:
            step += 1
            decay = (total - step + 1) / (total - warmup + 1) if hp.scheduler == "linear" else math.sqrt(warmup / step)
            return min(step / warmup, max(0.0, decay))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -- the tokenizer travels with the model --------------------------------------------------------

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer else None
        if datamodule is not None:
            self.attach_tokenizer(datamodule.tokenizer, source="the data")
            languages = (datamodule.src_lang, datamodule.tgt_lang)
            check_languages(self.languages, languages, "the model", f"dataset {datamodule.dataset!r}")
            self.languages = languages

    def attach_tokenizer(self, tokenizer: SharedTokenizer, source: str) -> None:
        """Use `tokenizer`; refuse one that differs from the tokenizer the model already has."""
        if self.tokenizer is not None and tokenizer != self.tokenizer:
            raise ValueError(
                f"the vocabulary of {source} differs from the model's own ({tokenizer.vocab_size} vs "
                f"{self.tokenizer.vocab_size} pieces, or the same size with other pieces): "
                "a checkpoint only works with the tokenizer it was trained with"
            )
        if tokenizer.vocab_size != self.vocab_size:
            raise ValueError(
                f"the model has a vocabulary of {self.vocab_size} but {source} has {tokenizer.vocab_size} pieces"
            )
        self.tokenizer = tokenizer

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokenizer"] = self.tokenizer.to_bytes() if self.tokenizer else None
        checkpoint["model_class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        checkpoint["languages"] = list(self.languages) if self.languages else None
        checkpoint["hardware"] = machine()
        checkpoint["rng_state"] = torch.get_rng_state()  # dropout continues as it would have after a resume

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_rng_state = checkpoint.get("rng_state")  # restored when training resumes, not for inference
        if checkpoint.get("tokenizer"):
            stored = SharedTokenizer.from_bytes(checkpoint["tokenizer"])
            if self.tokenizer is not None and stored != self.tokenizer:
                raise ValueError(
                    "the checkpoint was trained with another vocabulary than the data's tokenizer "
                    f"({stored.vocab_size} vs {self.tokenizer.vocab_size} pieces, or other pieces): "
                    "test it on the dataset and tokenizer settings it was trained with"
                )
            self.tokenizer = stored
        if checkpoint.get("languages"):
            check_languages(checkpoint["languages"], self.languages, "the checkpoint", "the data")  # data: `setup`
            self.languages = tuple(checkpoint["languages"])

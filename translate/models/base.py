"""What all three models share: loss, optimisation, and the interface every model offers.

A subclass builds its layers and implements

    features(src, src_lengths, tgt_in) -> (B, T, E), weights    teacher-forced input of `self.output`
    encode / decode_step                                          what search needs (search.Decoder)
    source_embedding                                              its source embedding layer
    has_attention / has_context_vector                            how its decoder sees the source

and nothing else; `output` is its output layer (an `nn.Linear` E -> V), which the loss fuses with the
cross-entropy. The rest of the interface every model offers (search.TranslationModel) is here. What a
model translates with besides its weights (tokenizer, languages, decoding settings) it is given by
:meth:`Seq2SeqModule.attach`; a checkpoint keeps them beside the weights.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor

from translate.batching import Batch
from translate.checkpoints import (
    check_languages,
    extras,
    model_from,
    new_run,
    read_checkpoint,
    restore,
    set_random_state,
)
from translate.evaluation import CorpusScore, corpus_score
from translate.files import write_lines
from translate.models.loss import output_cross_entropy
from translate.models.schedule import Scheduler, lr_scheduler
from translate.search import Decoding, Hypothesis, State, search
from translate.tokenizer import PAD_ID, SharedTokenizer


class Seq2SeqModule(L.LightningModule):
    """Base LightningModule of the three translation models.

    Args:
        vocab_size / pad_id: of the joint tokenizer (linked from the datamodule by the CLI).
        label_smoothing: of the token-level cross-entropy.
        lr / betas / weight_decay: AdamW (torch's fused kernel on CPU and CUDA: one pass over all
            parameters instead of a loop of small ops per tensor; its foreach version under mixed
            precision, where Lightning clips gradients only for optimizers that do not unscale them).
        scheduler / warmup_steps / patience: ``inverse_sqrt`` (linear warm-up over ``warmup_steps``, then
            1/sqrt(step)), ``linear`` (the same warm-up, at most half the run's steps, then a straight line
            down to zero at the trainer's last step or, where the trainer has a ``max_time``, at the end of
            that time: a slower machine anneals within the same budget), ``plateau`` (halve the rate when
            val/bleu stops rising for ``patience`` epochs) or ``constant`` (models/schedule.py).
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if pad_id != PAD_ID:
            raise ValueError(f"pad_id {pad_id} differs from the tokenizer's fixed pad id {PAD_ID}")
        self.vocab_size, self.pad_id = vocab_size, pad_id
        self.tokenizer: SharedTokenizer | None = None
        self.languages: tuple[str, str] | None = None  # (source, target) of the training data
        self.decoding = Decoding()
        self._hypotheses: dict[int, list[int]] = {}
        self.test_translations: list[str] = []  # of the last test loop, in corpus order (cli.py records them)
        self.test_seconds = 0.0
        self.run: str | None = None  # the training run's id, shared by all its checkpoints
        self.finished = False  # whether that run got to its end (epochs, steps or time)
        self._resumed_rng_state: dict[str, Any] | None = None

    # -- what a subclass provides (and search.Decoder's encode and decode_step) ---------------------

    output: torch.nn.Linear
    max_length: int | None = None  # the longest source and output the model can take (the Transformer's positions)
    has_attention: ClassVar[bool]  # the decoder attends over the source positions (search can record it)
    has_context_vector: ClassVar[bool]  # the source reaches the decoder as one vector (:meth:`context_vector`)
    attention_maps: int = 0  # the cross-attention maps :meth:`cross_attention` gives (layers x heads)

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

    @property
    def source_embedding(self) -> torch.nn.Embedding:
        """The layer that embeds source ids (saliency.py follows the gradient to its output)."""
        raise NotImplementedError

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

    # -- the interface every model offers (search.TranslationModel) ---------------------------------

    test_bleu: float | None = None  # a checkpoint's test BLEU lives in its evaluation records, not in the model
    has_gradients: ClassVar[bool] = True  # torch weights: saliency.py follows the gradient

    @property
    def architecture(self) -> str:
        """The model's class, by the name its checkpoints record ("TransformerSeq2Seq")."""
        return type(self).__name__

    @property
    def num_parameters(self) -> int:
        """How many numbers the model learns (a tensor shared by two layers counted once)."""
        return sum(p.numel() for p in self.parameters())

    def context_vector(self, src: Tensor, src_lengths: Tensor) -> Tensor | None:
        """The one vector (B, H) through which the source reaches the decoder, where the architecture
        has one (the page of `translate serve` shows it in place of attention); None otherwise."""
        return None

    def cross_attention(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor | None:
        """Every decoder layer's and head's attention (B, layers, heads, T, S), teacher-forced on `tgt_in`
        (B, T), where the architecture has several such maps (`attention_maps`); None otherwise."""
        return None

    def reorder(self, state: State, indices: Tensor) -> State:
        """Keep rows `indices` of every batch-first tensor in the state (a dict, possibly of lists)."""
        if isinstance(state, Tensor):
            return state.index_select(0, indices)
        if isinstance(state, dict):
            return {key: self.reorder(value, indices) for key, value in state.items()}
        if isinstance(state, list):
            return [self.reorder(value, indices) for value in state]
        return state

    def for_inference(self, device: torch.device) -> Seq2SeqModule:
        """The model on `device`, in evaluation mode."""
        return self.to(device).eval()

    def source_limit(self, decoding: Decoding) -> int:
        """The longest source decoded: `decoding.max_source_length`, within the model's own limit."""
        return min(decoding.max_source_length, self.max_length or decoding.max_source_length)

    def generate(
        self, src: Tensor, src_lengths: Tensor, decoding: Decoding | None = None, attention: bool = False
    ) -> list[list[Hypothesis]]:
        """The `n_best` translations of each source (B, S), by `decoding` (default: the model's own);
        with `attention`, each hypothesis carries its attention matrix (models with attention)."""
        return search(self, src, src_lengths, decoding or self.decoding, self.max_length, attention)

    def generate_batches(
        self, batches: Iterable[tuple[Tensor, Tensor]], decoding: Decoding | None = None, attention: bool = False
    ) -> Iterator[list[list[Hypothesis]]]:
        """:meth:`generate` of each batch (src (B, S), src_lengths (B,)), one after the other."""
        return (self.generate(src, src_lengths, decoding, attention) for src, src_lengths in batches)

    # -- evaluation loops --------------------------------------------------------------------------

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, nll, tokens = self.loss(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=int(tokens), sync_dist=True)
        self.log("val/ppl", nll.exp(), batch_size=int(tokens), sync_dist=True)
        self._collect(batch, replace(self.decoding, beam_size=1, n_best=1))  # greedy

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._collect(batch, self.decoding)

    def predict_step(self, batch: Batch, batch_idx: int) -> list[str]:
        """Translations of a batch of the datamodule's `predict_split`, decoded as in test, in batch order."""
        return self.tokenizer.decode(self._collect(batch, self.decoding))

    def _collect(self, batch: Batch, decoding: Decoding) -> list[list[int]]:
        """Decode a batch, keep its best hypotheses by corpus row, and return them in batch order.
        Sources over the limit (:meth:`source_limit`) are truncated, with a warning."""
        src, lengths, limit = batch.src, batch.src_lengths, self.source_limit(decoding)
        if src.size(1) > limit:
            rows = batch.index[lengths > limit].tolist()
            warnings.warn(f"{len(rows)} source(s) longer than {limit} tokens truncated (rows {rows})", stacklevel=2)
            src, lengths = src[:, :limit], lengths.clamp(max=limit)
        best = [hyps[0].tokens for hyps in self.generate(src, lengths, decoding)]
        self._hypotheses.update(zip(batch.index.tolist(), best, strict=True))
        return best

    def on_validation_epoch_start(self) -> None:
        self._hypotheses = {}

    def on_test_epoch_start(self) -> None:
        self._hypotheses = {}
        self._test_start = time.perf_counter()

    def on_predict_epoch_start(self) -> None:
        self._hypotheses = {}

    def _translations(self) -> tuple[list[int], list[str]]:
        """The corpus rows decoded by every rank (each decoded a disjoint share), in order, and their translations."""
        gathered = self._hypotheses
        if self.trainer.world_size > 1:
            shares: list[dict[int, list[int]]] = [{} for _ in range(self.trainer.world_size)]
            torch.distributed.all_gather_object(shares, self._hypotheses)
            gathered = {row: tokens for share in shares for row, tokens in share.items()}
            if len(gathered) != sum(len(share) for share in shares):
                raise RuntimeError("some sentences were decoded on more than one rank: the eval sampler overlaps")
        rows = sorted(gathered)
        return rows, self.tokenizer.decode([gathered[i] for i in rows])

    def _score(self, split: str) -> tuple[list[str], CorpusScore]:
        """The translations of a split's decoded rows in corpus order, scored by sacreBLEU (evaluation.py)."""
        rows, translations = self._translations()
        references = self.trainer.datamodule.references(split)
        return translations, corpus_score(translations, [references[i] for i in rows], n_bootstrap=1)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.log("val/bleu", self._score("validation")[1].bleu, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        """Score the test split; the translations stay for the evaluation record `translate test` writes."""
        self.test_translations, score = self._score("test")
        self.test_seconds = time.perf_counter() - self._test_start
        self.log("test/bleu", score.bleu)
        self.log("test/chrf", score.chrf)

    def on_predict_epoch_end(self) -> None:
        """Write the translations of the whole split, one line per source in corpus order, beside the logs."""
        _, translations = self._translations()
        split = self.trainer.datamodule.predict_split
        out = Path(self.trainer.log_dir or ".") / f"{split}_predictions.txt"  # a collective call under DDP
        if self.trainer.is_global_zero:
            write_lines(out, translations)
            self.print(f"predict: {len(translations)} sentences of the {split!r} split translated: {out}")

    # -- optimisation ------------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        """Refuse training data whose examples (joined pairs) may be longer than the model's positions."""
        longest = getattr(self.trainer.datamodule, "longest_training_example", None)
        if self.max_length is None or longest is None:
            return
        tokens = longest()
        if tokens > self.max_length:
            dm = self.trainer.datamodule
            raise ValueError(
                f"training examples reach {tokens} tokens (data.join={dm.join} pairs of up to "
                f"data.max_length={dm.max_length}), more than the model's {self.max_length} positions: "
                "raise the model's max_positions, or lower data.join or data.max_length"
            )

    def on_train_start(self) -> None:
        self.run, self.finished = self.run or new_run(), False
        if self._resumed_rng_state is not None:
            set_random_state(self._resumed_rng_state)
            self._resumed_rng_state = None

    def on_fit_end(self) -> None:
        """The run reached its end (epochs, steps or time; not a crash, and also when a resumed run had
        nothing left to train): its last checkpoints say so."""
        self.finished = True
        if self.trainer.fast_dev_run:  # a smoke run writes no checkpoint
            return
        callbacks = [cb for cb in self.trainer.checkpoint_callbacks if cb.save_last and cb.dirpath]
        for path in sorted({cb.last_model_path or str(Path(cb.dirpath) / "last.ckpt") for cb in callbacks}):
            self.trainer.save_checkpoint(path, weights_only=False)

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
        schedule = lr_scheduler(optimizer, self._trainer, hp.scheduler, hp.warmup_steps, hp.patience)
        return {"optimizer": optimizer} | ({"lr_scheduler": schedule} if schedule else {})

    # -- what the model translates with besides its weights (kept in its checkpoints: checkpoints.py) -

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer else None
        if datamodule is not None:
            languages = (datamodule.src_lang, datamodule.tgt_lang)
            self.attach(datamodule.tokenizer, languages, source=f"dataset {datamodule.dataset!r}")

    def attach(
        self,
        tokenizer: SharedTokenizer | None = None,
        languages: Sequence[str] | None = None,
        decoding: Decoding | None = None,
        source: str = "the data",
    ) -> Seq2SeqModule:
        """Give the model what it translates with besides its weights (none of it a hyper-parameter: the
        tokenizer is made by the data after the model, and all three are kept beside the weights in a
        checkpoint): the joint `tokenizer` of its training data, the `languages` (source, target) it
        translates between, and how to decode. Refuses, naming `source`, a tokenizer or language pair
        other than the one the model already has. Returns the model."""
        if tokenizer is not None:
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
        if languages is not None:
            check_languages(self.languages, languages, "the model", source)
            self.languages = (languages[0], languages[1])
        if decoding is not None:
            self.decoding = decoding
        return self

    @classmethod
    def load_from_checkpoint(
        cls, checkpoint_path: str | Path, map_location: str | torch.device | None = None, **overrides: Any
    ) -> Seq2SeqModule:
        """Lightning's loader, for checkpoints of every format: the model with its tokenizer and decoding
        settings (as checkpoints.load_model); `overrides` replace hyper-parameters."""
        model = model_from(read_checkpoint(checkpoint_path), **overrides)
        return model.to(map_location) if map_location is not None else model

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.update(extras(self))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_rng_state = checkpoint.get("rng_state")  # restored when training resumes, not for inference
        self.run, self.finished = checkpoint.get("run"), checkpoint.get("finished", False)
        restore(self, checkpoint)  # tokenizer and languages; the decoding settings stay the config's

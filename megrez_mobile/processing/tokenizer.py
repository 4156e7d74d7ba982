"""The Megrez tokenizer: the checkpoint's byte-level BPE `tokenizer.json`, with two guarantees on top.

1. Special-token ids are looked up by their strings, never hard-coded.
2. Text from a user is encoded by the BPE model alone, so `<|turn_end|>` typed by a user stays five
   plain-text pieces and can never close a turn or inject a marker.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from ..errors import CheckpointError

TOKENIZER_FILE = "tokenizer.json"


class MegrezTokenizer:
    def __init__(self, tokenizer: Tokenizer, source: str = "<memory>"):
        self._tok = tokenizer
        self.source = source
        self._special = {t.content: i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}

    @classmethod
    def from_file(cls, path: str | Path) -> "MegrezTokenizer":
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: the checkpoint directory needs its tokenizer.json")
        try:
            return cls(Tokenizer.from_file(str(path)), str(path))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise CheckpointError(f"{path} is not a valid Hugging Face tokenizer.json ({e}). Re-download it.") from e

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path) -> "MegrezTokenizer":
        return cls.from_file(Path(checkpoint_dir) / TOKENIZER_FILE)

    # --- vocabulary -----------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids including added tokens (the exported runner samples over this many)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self._special.values())

    def token_id(self, token: str) -> int:
        """The id of special token `token` (e.g. "<|turn_end|>")."""
        try:
            return self._special[token]
        except KeyError:
            raise CheckpointError(f"{self.source} has no special token {token!r}; this is not a Megrez-3B-Omni "
                                  "tokenizer (or preprocessor_config.json names a marker it lacks)") from None

    def has_token(self, token: str) -> bool:
        return token in self._special

    # --- encode / decode ------------------------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        """Plain text -> ids through normaliser, pre-tokeniser and BPE only: added/special tokens never match."""
        if not text:
            return []
        if self._tok.normalizer is not None:
            text = self._tok.normalizer.normalize_str(text)
        pieces = self._tok.pre_tokenizer.pre_tokenize_str(text) if self._tok.pre_tokenizer else [(text, None)]
        model = self._tok.model
        return [t.id for piece, _ in pieces for t in model.tokenize(piece)]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

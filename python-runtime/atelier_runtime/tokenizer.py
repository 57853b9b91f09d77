"""A CLIP tokenizer built in code, for models trained here (the tiny test models and the demo model).

Nothing can be fetched from a hub, so the vocabulary is generated: the byte-level alphabet CLIP
uses, plus BPE merges that make each given word a single token. Any other text still tokenizes
(into single characters), so every prompt is valid.
"""

from __future__ import annotations

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to a printable unicode character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    while len(pieces) > 1:
        candidates = [(ranks[pair], i) for i, pair in enumerate(zip(pieces, pieces[1:])) if pair in ranks]
        if not candidates:
            break
        _, i = min(candidates)
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def build_clip_tokenizer(words, max_length: int):
    """A CLIPTokenizer: the byte alphabet, merges that make each of ``words`` one token, then BOS/EOS."""
    from transformers import CLIPTokenizer

    alphabet = list(_bytes_to_unicode().values())
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        # Add merges until BPE (lowest-ranked pair first) turns the word into a single token.
        # A new merge ranks after all earlier ones, so it never changes how earlier words split.
        while len(pieces := _bpe(word, ranks)) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab_list.append(pair[0] + pair[1])
    vocab_list += [BOS, EOS]
    vocab = {token: i for i, token in enumerate(vocab_list)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)

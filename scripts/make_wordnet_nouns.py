"""Regenerates data/wordnet_nouns.txt: the WordNet 3.0 noun lemmas, one per line.

Source: Debian's `wordnet-base` package (`apt-get install wordnet-base`), file
/usr/share/wordnet/index.noun. Underscores become spaces; lemmas are de-duplicated (keeping the
first spelling, in index order) and written in that order. The WordNet licence, which permits
redistribution with its notice, is copied to data/WORDNET-LICENSE.
Usage: python3 scripts/make_wordnet_nouns.py [/usr/share/wordnet]
"""
import pathlib, sys

src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wordnet")
root = pathlib.Path(__file__).resolve().parents[1]
seen, out = set(), []
for line in (src / "index.noun").read_text(encoding="latin-1").splitlines():
    if not line or line.startswith("  "):  # the licence header lines start with two spaces
        continue
    lemma = line.split(" ", 1)[0].replace("_", " ")
    if lemma not in seen:
        seen.add(lemma)
        out.append(lemma)
(root / "data" / "wordnet_nouns.txt").write_text("\n".join(out) + "\n", encoding="utf-8")
copyright = pathlib.Path("/usr/share/doc/wordnet-base/copyright")
(root / "data" / "WORDNET-LICENSE").write_text(copyright.read_text(encoding="utf-8"), encoding="utf-8")
print(len(out), "noun lemmas")

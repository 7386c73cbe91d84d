#!/usr/bin/env python3
"""The RAG stack most tutorials build, side by side with Lore (issue 20, "Side by side").

    LangChain RecursiveCharacterTextSplitter (800 characters, 100 overlap)
    -> all-MiniLM-L6-v2 (the same int8 ONNX file Lore uses) through onnxruntime
    -> qdrant-client in local mode, cosine, the ACL as a payload filter (MatchAny)
    -> rank_bm25.BM25Okapi over lowercased word tokens, the ACL applied after scoring
    -> reciprocal-rank fusion (k = 60) of the two top-k lists.

Both stacks start from the same document text: `lore-bench peer-corpus` dumps each document as
Lore's own loaders parse it (a section per PDF page), with its ACL, and the questions with the
askers' principals. `lore-bench peer-score` scores the run file this script writes with
lore-eval's own metric code. See README.md.

Subcommands:
    quality --set eval/sets/X.toml [...]   nDCG@10 / recall@10 next to Lore's baseline
    speed --mix handbook|all [--replicas N] ingest chunks/s, search p50/p95 (concurrency 1)
    report                                  rewrite bench/results/peer.md from peer.json
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORK = HERE / "work"
RESULTS = REPO / "bench" / "results"

# ---------------------------------------------------------------------------------------------
# Settings. Lore's own values are in crates/lore-core/src/config.rs (EmbeddingConfig defaults:
# max_length 256, batch_size 32, threads = all cores; RetrievalConfig: candidates 40, rrf_k 60);
# lore-eval retrieves 20 passages per question and ranks documents by their best passage.
# ---------------------------------------------------------------------------------------------
MAX_LENGTH = 256
BATCH_SIZE = 32
DIMENSION = 384


def models_dir() -> Path:
    return Path(os.environ.get("LORE_MODELS_DIR") or REPO / ".models")


def lore_bench() -> str:
    """The lore-bench binary: $LORE_BENCH, else the release build in $CARGO_TARGET_DIR or target/."""
    if os.environ.get("LORE_BENCH"):
        return os.environ["LORE_BENCH"]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return str(target / "release" / "lore-bench")


def percentile(values, q):
    """Nearest-rank percentile, as lore_eval::metrics::percentile computes it."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, int(np.ceil(q * len(ordered))))
    return ordered[min(rank, len(ordered)) - 1]


# ---------------------------------------------------------------------------------------------
# Embedding: onnxruntime + tokenizers, mean pooling over the attention mask, L2 normalisation.
# ---------------------------------------------------------------------------------------------
class Embedder:
    def __init__(self, model_dir: Path, threads: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(model_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_LENGTH)
        self.tokenizer.enable_padding()  # to the longest text of the batch
        model_bytes = (model_dir / "model.onnx").read_bytes()
        self.fingerprint = hashlib.sha256(model_bytes).hexdigest()[:16]

    def embed(self, texts):
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for start in range(0, len(texts), BATCH_SIZE):
            batch = texts[start : start + BATCH_SIZE]
            encodings = self.tokenizer.encode_batch(batch)
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
            hidden = self.session.run(None, feed)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[start : start + len(batch)] = pooled / norms
        return out


class EmbeddingCache:
    """Vectors by sha256 of (model, text), kept in work/ between runs. Only the speed runs'
    index building and the quality runs use it; the ingest timing never does."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self.path = WORK / f"embeddings-{embedder.fingerprint}.npz"
        self.rows = {}
        self.vectors = []
        self.dirty = False
        if self.path.exists():
            data = np.load(self.path)
            for i, key in enumerate(data["keys"]):
                self.rows[str(key)] = i
            self.vectors = list(data["vectors"])

    @staticmethod
    def key(text):
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get(self, texts, fill_random_beyond=None):
        """Vectors of `texts`: cached ones, the rest embedded (each distinct text once). With
        `fill_random_beyond`, at most that many are embedded and the others get random unit
        vectors (for latency-only runs; reported)."""
        keys = [self.key(t) for t in texts]
        missing = {}
        for k, t in zip(keys, texts):
            if k not in self.rows and k not in missing:
                missing[k] = t
        todo = list(missing.items())
        faked = 0
        if fill_random_beyond is not None and len(todo) > fill_random_beyond:
            faked = len(todo) - fill_random_beyond
            todo = todo[:fill_random_beyond]
        if todo:
            print(f"  embedding {len(todo)} new distinct texts ({len(self.rows)} cached)", file=sys.stderr, flush=True)
            started = time.time()
            for start in range(0, len(todo), 1024):
                part = todo[start : start + 1024]
                vectors = self.embedder.embed([t for _, t in part])
                for (k, _), v in zip(part, vectors):
                    self.rows[k] = len(self.vectors)
                    self.vectors.append(v)
                self.dirty = True
                done = start + len(part)
                rate = done / (time.time() - started)
                print(f"    {done}/{len(todo)} ({rate:.1f} texts/s)", file=sys.stderr, flush=True)
                if done % 4096 == 0:
                    self.save()
        rng = np.random.default_rng(0)
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for i, k in enumerate(keys):
            if k in self.rows:
                out[i] = self.vectors[self.rows[k]]
            else:
                v = rng.standard_normal(DIMENSION).astype(np.float32)
                out[i] = v / np.linalg.norm(v)
        return out, faked

    def save(self):
        if not self.dirty:
            return
        WORK.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(self.rows, key=self.rows.get))
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vectors=np.array(self.vectors, dtype=np.float32))
        tmp.replace(self.path)
        self.dirty = False


# ---------------------------------------------------------------------------------------------
# Chunking: LangChain's RecursiveCharacterTextSplitter, per page for PDFs (PyPDFLoader gives a
# Document per page and split_documents keeps its metadata), per file otherwise.
# ---------------------------------------------------------------------------------------------
def chunk_corpus(docs, chunk_size, overlap, with_title):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=overlap)
    chunks = []
    for d in docs:
        for section in d["sections"]:
            for piece in splitter.split_text(section["text"]):
                text = f"{d['title']}\n\n{piece}" if with_title else piece
                chunks.append(
                    {
                        "text": text,
                        "source": d["source"],
                        "path": d["path"],
                        "page": section["page"],
                        "acl": d["acl"],
                    }
                )
    return chunks


WORD = re.compile(r"\w+")


def bm25_tokens(text):
    """What tutorials feed BM25Okapi: lowercased word tokens, no stemming, no stop words."""
    return WORD.findall(text.lower())


# ---------------------------------------------------------------------------------------------
# The index: BM25Okapi over every chunk, Qdrant local mode with the ACL in the payload.
# ---------------------------------------------------------------------------------------------
class PeerIndex:
    def __init__(self, chunks, vectors, qdrant_path=":memory:"):
        from qdrant_client import QdrantClient
        from qdrant_client.models import Distance, PointStruct, VectorParams
        from rank_bm25 import BM25Okapi

        self.chunks = chunks
        timings = {}
        started = time.time()
        self.bm25 = BM25Okapi([bm25_tokens(c["text"]) for c in chunks])
        timings["bm25_build_s"] = time.time() - started
        started = time.time()
        self.client = QdrantClient(location=":memory:") if qdrant_path == ":memory:" else QdrantClient(path=qdrant_path)
        self.collection = "peer"
        if self.client.collection_exists(self.collection):
            self.client.delete_collection(self.collection)
        self.client.create_collection(self.collection, vectors_config=VectorParams(size=DIMENSION, distance=Distance.COSINE))
        for start in range(0, len(chunks), 256):
            points = [
                PointStruct(id=i, vector=vectors[i].tolist(), payload={"acl": chunks[i]["acl"], "n": i})
                for i in range(start, min(start + 256, len(chunks)))
            ]
            self.client.upsert(self.collection, points=points, wait=True)
        timings["qdrant_upsert_s"] = time.time() - started
        self.build_timings = timings

    def search(self, query_vector, query_text, principals, candidates, passages, timings, mode="hybrid", max_per_doc=0):
        from qdrant_client.models import FieldCondition, Filter, MatchAny

        allowed = set(principals)
        # BM25: score every chunk, then drop the ones the asker may not read (post-filter).
        started = time.perf_counter()
        scores = self.bm25.get_scores(bm25_tokens(query_text))
        bm25_ranked = []
        for i in np.argsort(-scores, kind="stable"):
            if scores[i] <= 0:
                break
            if allowed.intersection(self.chunks[i]["acl"]):
                bm25_ranked.append(int(i))
                if len(bm25_ranked) == candidates:
                    break
        timings["bm25_ms"].append((time.perf_counter() - started) * 1000)
        # Dense: Qdrant with the ACL as a payload filter.
        started = time.perf_counter()
        hits = self.client.query_points(
            self.collection,
            query=query_vector.tolist(),
            query_filter=Filter(must=[FieldCondition(key="acl", match=MatchAny(any=list(allowed)))]),
            limit=candidates,
            with_payload=False,
        ).points
        dense_ranked = [int(h.id) for h in hits]
        timings["dense_ms"].append((time.perf_counter() - started) * 1000)
        # Reciprocal-rank fusion, k = 60, equal weights (LangChain's EnsembleRetriever).
        started = time.perf_counter()
        fused = {}
        engines = {"hybrid": (bm25_ranked, dense_ranked), "bm25": (bm25_ranked,), "dense": (dense_ranked,)}[mode]
        for ranked in engines:
            for rank, i in enumerate(ranked):
                fused[i] = fused.get(i, 0.0) + 1.0 / (60 + rank + 1)
        top = sorted(fused, key=lambda i: (-fused[i], i))
        if max_per_doc:
            # Experiments only: at most N chunks of one document, as Lore's max_chunks_per_document.
            seen = {}
            kept = []
            for i in top:
                doc = (self.chunks[i]["source"], self.chunks[i]["path"])
                seen[doc] = seen.get(doc, 0) + 1
                if seen[doc] <= max_per_doc:
                    kept.append(i)
            top = kept
        top = top[:passages]
        timings["fusion_ms"].append((time.perf_counter() - started) * 1000)
        return top


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def peer_corpus(args_for_lore, out_dir: Path, reuse=False):
    """Runs `lore-bench peer-corpus` into out_dir (with `reuse`, only if its output is not there:
    the 100k mix takes minutes to parse; delete bench/peer/work/bench/ after changing it)."""
    if reuse and (out_dir / "corpus.jsonl").exists() and (out_dir / "questions.jsonl").exists():
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [lore_bench(), "peer-corpus", *args_for_lore, "--out", str(out_dir)]
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def settings_of(args):
    return {
        "splitter": f"langchain RecursiveCharacterTextSplitter chunk_size={args.chunk_size} chunk_overlap={args.overlap}",
        "title_in_chunk": bool(args.title),
        "embedding": f"all-minilm-l6-v2-int8 via onnxruntime, max_length {MAX_LENGTH}, batch {BATCH_SIZE}, mean pooling, L2",
        "bm25": "rank_bm25.BM25Okapi (k1 1.5, b 0.75), lowercased \\w+ tokens, ACL filter after scoring",
        "dense": "qdrant-client local mode (:memory:), cosine, ACL as payload filter MatchAny",
        "fusion": f"RRF k=60 over top {args.candidates} of each, {args.passages} passages returned",
        "mode": getattr(args, "mode", "hybrid"),
        "max_per_doc": getattr(args, "max_per_doc", 0),
    }


def update_results(section, key, value):
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "peer.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(section, {})[key] = value
    data["machine"] = {"threads": os.cpu_count(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    render_report(data)


# ---------------------------------------------------------------------------------------------
# quality
# ---------------------------------------------------------------------------------------------
def quality(args):
    embedder = Embedder(models_dir() / "all-minilm-l6-v2-int8", args.threads)
    cache = EmbeddingCache(embedder)
    for set_path in args.set:
        set_path = Path(set_path).resolve()
        name = set_path.stem
        out = WORK / "sets" / name
        peer_corpus(["--set", str(set_path)], out)
        docs = read_jsonl(out / "corpus.jsonl")
        questions = [q for q in read_jsonl(out / "questions.jsonl") if q["answerable"] or args.all_questions]
        if args.questions:
            questions = questions[: args.questions]
        chunks = chunk_corpus(docs, args.chunk_size, args.overlap, args.title)
        print(f"{name}: {len(docs)} documents, {len(chunks)} chunks, {len(questions)} questions", file=sys.stderr, flush=True)
        vectors, _ = cache.get([c["text"] for c in chunks])
        cache.save()
        index = PeerIndex(chunks, vectors)
        query_vectors = embedder.embed([q["question"] for q in questions])
        timings = {"bm25_ms": [], "dense_ms": [], "fusion_ms": []}
        run_path = out / f"run-{args.tag}.jsonl"
        with open(run_path, "w", encoding="utf-8") as f:
            for q, v in zip(questions, query_vectors):
                top = index.search(v, q["question"], q["principals"], args.candidates, args.passages, timings, args.mode, args.max_per_doc)
                passages = [
                    {"source": chunks[i]["source"], "path": chunks[i]["path"], "page": chunks[i]["page"], "acl": chunks[i]["acl"]}
                    for i in top
                ]
                f.write(json.dumps({"id": q["id"], "passages": passages}) + "\n")
        scores_path = out / f"scores-{args.tag}.json"
        subprocess.run(
            [lore_bench(), "peer-score", "--set", str(set_path), "--run", str(run_path), "--json", str(scores_path)],
            check=True,
            cwd=REPO,
        )
        scores = json.loads(scores_path.read_text())
        scores["peer_chunks"] = len(chunks)
        scores["peer_documents"] = len(docs)
        scores["peer_settings"] = settings_of(args)
        defaults = (args.chunk_size, args.overlap, args.title, args.candidates, args.passages, args.mode, args.max_per_doc)
        if args.tag == "default" and defaults == (800, 100, False, 40, 20, "hybrid", 0):
            update_results("quality", name, scores)
        else:
            # An experiment: kept under "experiments" (by set and tag), never as the set's result.
            update_results("experiments", f"{name}/{args.tag}", scores)


# ---------------------------------------------------------------------------------------------
# speed
# ---------------------------------------------------------------------------------------------
def speed(args):
    label = f"{args.mix}-x{args.replicas}"
    load_before = os.getloadavg()[1]  # 5-minute load average: how shared the cores were
    out = WORK / "bench" / label
    peer_corpus(["--mix", args.mix, "--replicas", str(args.replicas), "--shared", str(args.shared)], out, reuse=True)
    embedder = Embedder(models_dir() / "all-minilm-l6-v2-int8", args.threads)
    docs = read_jsonl(out / "corpus.jsonl")
    questions = read_jsonl(out / "questions.jsonl")[: args.questions]

    # 1. Ingest, as one process does it: chunk, embed (no cache), index. Measured on the first
    #    --ingest-chunks chunks of the corpus (embedding dominates; a slice keeps the run short).
    started = time.time()
    all_chunks = chunk_corpus(docs, args.chunk_size, args.overlap, args.title)
    chunk_s = time.time() - started
    n = min(args.ingest_chunks or len(all_chunks), len(all_chunks))
    per_chunk_chunking = chunk_s / len(all_chunks)
    ingest_slice = all_chunks[:n]
    started = time.time()
    slice_vectors = embedder.embed([c["text"] for c in ingest_slice])
    embed_s = time.time() - started
    slice_index = PeerIndex(ingest_slice, slice_vectors)
    index_s = time.time() - started - embed_s
    ingest_s = per_chunk_chunking * n + embed_s + index_s
    ingest = {
        "chunks_timed": n,
        "seconds": ingest_s,
        "chunks_per_s": n / ingest_s,
        "stage_seconds": {"chunk": per_chunk_chunking * n, "embed": embed_s, "index": index_s},
        "index_build": slice_index.build_timings,
    }
    del slice_index
    print(f"ingest: {n} chunks in {ingest_s:.1f} s = {n / ingest_s:.1f} chunks/s", file=sys.stderr, flush=True)
    if args.lore_reference:
        # Lore's ingest of a folder right now, under the same load: `lore-bench ingest` (which also
        # embeds the same chunk texts with ONNX Runtime alone, as a raw reference).
        reference = WORK / "bench" / "lore-reference.json"
        command = [lore_bench(), "ingest", str(args.lore_reference), "--json", str(reference)]
        print("$ " + " ".join(command), file=sys.stderr, flush=True)
        subprocess.run(command, check=True, cwd=REPO)
        lore = json.loads(reference.read_text())
        ingest["lore_reference"] = {
            "folder": str(args.lore_reference),
            "chunks": lore["chunks"],
            "ingest_chunks_per_s": lore["ingest_chunks_per_s"],
            "raw_onnxruntime_texts_per_s": lore["raw_onnxruntime"]["texts_per_s"],
        }

    # 2. The whole corpus for search: vectors from the cache (each distinct text embedded once;
    #    the replicas of the 100k corpus repeat the same texts).
    cache = EmbeddingCache(embedder)
    for key, v in zip((cache.key(c["text"]) for c in ingest_slice), slice_vectors):
        if key not in cache.rows:
            cache.rows[key] = len(cache.vectors)
            cache.vectors.append(v)
            cache.dirty = True
    vectors, faked = cache.get([c["text"] for c in all_chunks], fill_random_beyond=args.embed_limit)
    cache.save()
    distinct = len({cache.key(c["text"]) for c in all_chunks})
    started = time.time()
    index = PeerIndex(all_chunks, vectors)
    build_s = time.time() - started
    principals = [args.principal]
    permitted = sum(1 for c in all_chunks if args.principal in c["acl"])
    print(
        f"search corpus: {len(all_chunks)} chunks ({distinct} distinct texts), {permitted} permitted to {args.principal}; "
        f"index built in {build_s:.1f} s",
        file=sys.stderr,
        flush=True,
    )

    # 3. Search at concurrency 1, in-process: embed the query, BM25, dense, fuse.
    timings = {"bm25_ms": [], "dense_ms": [], "fusion_ms": []}
    embed_ms, total_ms = [], []
    for q in questions[: args.warmup]:
        v = embedder.embed([q["question"]])[0]
        index.search(v, q["question"], principals, args.candidates, args.passages, {k: [] for k in timings})
    for i, q in enumerate(questions):
        started = time.perf_counter()
        v = embedder.embed([q["question"]])[0]
        embed_ms.append((time.perf_counter() - started) * 1000)
        index.search(v, q["question"], principals, args.candidates, args.passages, timings)
        total_ms.append((time.perf_counter() - started) * 1000)
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{len(questions)} queries, p50 {percentile(total_ms, 0.5):.1f} ms", file=sys.stderr, flush=True)
    search = {
        "queries": len(questions),
        "principal": args.principal,
        "permitted_chunks": permitted,
        "p50_ms": percentile(total_ms, 0.5),
        "p95_ms": percentile(total_ms, 0.95),
        "p99_ms": percentile(total_ms, 0.99),
        "embed_ms_p50": percentile(embed_ms, 0.5),
        "bm25_ms_p50": percentile(timings["bm25_ms"], 0.5),
        "dense_ms_p50": percentile(timings["dense_ms"], 0.5),
        "fusion_ms_p50": percentile(timings["fusion_ms"], 0.5),
        "bm25_ms_p95": percentile(timings["bm25_ms"], 0.95),
        "dense_ms_p95": percentile(timings["dense_ms"], 0.95),
    }
    result = {
        "corpus": f"lore-bench corpus mix {args.mix}, {args.replicas} replica(s)",
        "documents": len(docs),
        "chunks": len(all_chunks),
        "distinct_chunk_texts": distinct,
        "random_vectors": faked,
        "ingest": ingest,
        "index_build_seconds": build_s,
        "index_build": index.build_timings,
        "search": search,
        "settings": settings_of(args),
        "load_average_5min": {"start": load_before, "end": os.getloadavg()[1]},
    }
    print(json.dumps(search, indent=1), file=sys.stderr)
    update_results("speed", label, result)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def fmt(v, digits=3):
    return "–" if v is None else f"{v:.{digits}f}"


def lore_speed():
    """Lore's numbers from bench/results/suite.json (the `lore-bench suite` run committed there)."""
    path = RESULTS / "suite.json"
    if not path.exists():
        return {}
    suite = json.loads(path.read_text())
    out = {}
    for ingest in suite.get("ingest", []):
        if "sourcegraph-handbook" in ingest.get("corpus", ""):
            out["ingest_chunks_per_s"] = ingest["ingest_chunks_per_s"]
            out["ingest_chunks"] = ingest["chunks"]
    for corpus in suite.get("corpora", []):
        for s in corpus.get("search", []):
            if s["share"] == "100%" and s["concurrency"] == 1:
                key = "12k" if corpus["chunks"] < 50_000 else "100k"
                out[key] = {
                    "chunks": corpus["chunks"],
                    **{k: s.get(k) for k in ("p50_ms", "p95_ms", "embed_ms", "bm25_ms", "dense_ms", "fusion_ms")},
                }
    out["date"] = suite.get("machine", {}).get("date")
    return out


def render_report(data):
    lines = ["# Lore next to the usual Python RAG stack (bench/peer)", ""]
    lines.append(
        f"Generated by `bench/peer/run.sh`; machine: {data.get('machine', {}).get('threads')} threads, "
        f"{data.get('machine', {}).get('date')}. The peer: LangChain RecursiveCharacterTextSplitter (800 characters, "
        "100 overlap), all-MiniLM-L6-v2 int8 through onnxruntime, Qdrant local mode with the ACL as a payload filter, "
        "rank_bm25 BM25Okapi with the ACL applied after scoring, RRF k=60. Both start from the text Lore's loaders "
        "extract; both are scored by lore-eval's metric code. See bench/peer/README.md."
    )
    lines.append("")
    quality = data.get("quality", {})
    if quality:
        lines += [
            "## Retrieval quality (answerable questions, documents ranked by their best of 20 passages)",
            "",
            "| set | questions | peer chunks | peer nDCG@10 | peer recall@10 | Lore hybrid nDCG@10 | Lore hybrid recall@10 "
            "| peer page nDCG@10 | Lore page nDCG@10 | peer page recall@10 | Lore page recall@10 | peer leaks |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        order = ["samples", "handbook", "families", "contoso-hr", "clapnq", "clapnq-ci", "squad-es"]
        for name in sorted(quality, key=lambda n: (order.index(n) if n in order else 99, n)):
            q = quality[name]
            p, l = q.get("peer", {}), q.get("lore_hybrid", {})
            lines.append(
                f"| {name} | {q.get('scored')} | {q.get('peer_chunks')} | {fmt(p.get('doc.ndcg@10'))} | {fmt(p.get('doc.recall@10'))} | "
                f"{fmt(l.get('doc.ndcg@10'))} | {fmt(l.get('doc.recall@10'))} | {fmt(p.get('page.ndcg@10'))} | "
                f"{fmt(l.get('page.ndcg@10'))} | {fmt(p.get('page.recall@10'))} | {fmt(l.get('page.recall@10'))} | {q.get('leaks')} |"
            )
        lines.append("")
        lines.append("Lore's numbers are the committed baselines (`eval/baselines/<set>.json`, mode hybrid).")
        lines.append("")
    experiments = data.get("experiments", {})
    if experiments:
        lines += [
            "## Experiments (the peer with one thing changed; `peer.py quality --tag T ...`)",
            "",
            "| set/tag | change | peer nDCG@10 | peer recall@10 | peer page nDCG@10 | peer page recall@10 | Lore nDCG@10 (same mode) | Lore page recall@10 (same mode) |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for key, q in sorted(experiments.items()):
            st = q.get("peer_settings", {})
            p, l = q.get("peer", {}), q.get("lore_" + st.get("mode", "hybrid")) or {}
            change = []
            if st.get("mode", "hybrid") != "hybrid":
                change.append(f"{st['mode']} only")
            if st.get("max_per_doc"):
                change.append(f"at most {st['max_per_doc']} chunks per document")
            if st.get("title_in_chunk"):
                change.append("title in every chunk")
            if "chunk_size=800 chunk_overlap=100" not in st.get("splitter", "chunk_size=800 chunk_overlap=100"):
                change.append(st["splitter"].split("Splitter ")[-1])
            if "top 40 of each, 20 passages" not in st.get("fusion", "top 40 of each, 20 passages"):
                change.append(st["fusion"])
            lines.append(
                f"| {key} | {', '.join(change) or '–'} | {fmt(p.get('doc.ndcg@10'))} | {fmt(p.get('doc.recall@10'))} | "
                f"{fmt(p.get('page.ndcg@10'))} | {fmt(p.get('page.recall@10'))} | {fmt(l.get('doc.ndcg@10'))} | {fmt(l.get('page.recall@10'))} |"
            )
        lines.append("")
    speed_runs = data.get("speed", {})
    if speed_runs:
        lore = lore_speed()
        lines += [
            "## Speed (2 cores; each run's load average at its start and end is noted below the table)",
            "",
            "| corpus | stack | chunks | ingest chunks/s | search p50 ms | search p95 ms | embed p50 | BM25 p50 | dense p50 | fusion p50 |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, r in sorted(speed_runs.items(), key=lambda kv: kv[1]["chunks"]):
            s = r["search"]
            ing = r["ingest"]
            lines.append(
                f"| {label} | peer | {r['chunks']} | {fmt(ing['chunks_per_s'], 1)} (first {ing['chunks_timed']}) | "
                f"{fmt(s['p50_ms'], 1)} | {fmt(s['p95_ms'], 1)} | {fmt(s['embed_ms_p50'], 1)} | {fmt(s['bm25_ms_p50'], 1)} | "
                f"{fmt(s['dense_ms_p50'], 1)} | {fmt(s['fusion_ms_p50'], 2)} |"
            )
            ref = ing.get("lore_reference")
            if ref:
                lines.append(
                    f"| {label} | Lore, same load: `lore-bench ingest` {Path(ref['folder']).name} | {ref['chunks']} | "
                    f"{fmt(ref['ingest_chunks_per_s'], 1)} (raw ORT {fmt(ref['raw_onnxruntime_texts_per_s'], 1)} texts/s) | | | | | | |"
                )
            key = "12k" if r["chunks"] < 50_000 else "100k"
            if key in lore:
                ingest = fmt(lore.get("ingest_chunks_per_s"), 1) if key == "12k" else "–"
                lines.append(
                    f"| {label} | Lore (suite.json, HTTP /v1/search) | {lore[key]['chunks']} | {ingest} | "
                    f"{fmt(lore[key]['p50_ms'], 1)} | {fmt(lore[key]['p95_ms'], 1)} | {fmt(lore[key]['embed_ms'], 1)} | "
                    f"{fmt(lore[key]['bm25_ms'], 1)} | {fmt(lore[key]['dense_ms'], 1)} | {fmt(lore[key]['fusion_ms'], 2)} |"
                )
        lines.append("")
        notes = []
        for label, r in sorted(speed_runs.items(), key=lambda kv: kv[1]["chunks"]):
            notes.append(
                f"- {label}: {r['documents']} documents, {r['chunks']} peer chunks ({r['distinct_chunk_texts']} distinct texts, "
                f"each embedded once; {r['random_vectors']} of them given random unit vectors instead, which leaves the "
                f"brute-force search time unchanged), {r['search']['queries']} queries as "
                f"{r['search']['principal']} ({r['search']['permitted_chunks']} permitted chunks); index build "
                f"{r['index_build_seconds']:.0f} s (BM25 {r['index_build']['bm25_build_s']:.0f} s, Qdrant upsert "
                f"{r['index_build']['qdrant_upsert_s']:.0f} s)"
                + (
                    f"; 5-minute load average {r['load_average_5min']['start']:.1f} at the start, "
                    f"{r['load_average_5min']['end']:.1f} at the end (2 cores)."
                    if "load_average_5min" in r
                    else "."
                )
            )
        lines += notes
        lines.append(
            f"- Lore: `bench/results/suite.json` ({lore.get('date')}), search over HTTP at concurrency 1 with the 100 % share; "
            "Lore's stage columns are means, the peer's medians; the peer's numbers are in-process (no HTTP)."
        )
        lines.append("")
    (RESULTS / "peer.md").write_text("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--chunk-size", type=int, default=800)
        p.add_argument("--overlap", type=int, default=100)
        p.add_argument("--title", action="store_true", help="prepend the document title to every chunk (not what tutorials do)")
        p.add_argument("--candidates", type=int, default=40, help="top-k of each engine fed to RRF (Lore: 40)")
        p.add_argument("--passages", type=int, default=20, help="fused passages returned (lore eval: 20)")
        p.add_argument("--threads", type=int, default=os.cpu_count())

    q = sub.add_parser("quality")
    common(q)
    q.add_argument("--set", action="append", required=True, help="eval/sets/X.toml (repeatable)")
    q.add_argument("--questions", type=int, default=0, help="only the first N answerable questions")
    q.add_argument("--all-questions", action="store_true", help="also ask unanswerable ones (leak check only)")
    q.add_argument("--tag", default="default", help="run name (file names); only a default run updates bench/results/peer.json")
    q.add_argument("--max-per-doc", type=int, default=0, help="at most N chunks of a document among the passages (experiments)")
    q.add_argument("--mode", choices=["hybrid", "bm25", "dense"], default="hybrid", help="one engine alone, for experiments")

    s = sub.add_parser("speed")
    common(s)
    s.add_argument("--mix", choices=["handbook", "all"], default="handbook")
    s.add_argument("--replicas", type=int, default=1)
    s.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    s.add_argument("--questions", type=int, default=300)
    s.add_argument("--warmup", type=int, default=10)
    s.add_argument("--ingest-chunks", type=int, default=2000, help="chunks timed for ingest (0: all)")
    s.add_argument("--embed-limit", type=int, default=None, help="embed at most N new texts; the rest get random vectors")
    s.add_argument("--lore-reference", help="a folder for `lore-bench ingest` right after the peer's ingest (same load)")
    s.add_argument("--principal", default="group:all", help="the asker (lore-bench corpus ACLs: group:all = 100 %%)")

    sub.add_parser("report")
    args = parser.parse_args()
    if args.command == "quality":
        quality(args)
    elif args.command == "speed":
        speed(args)
    else:
        path = RESULTS / "peer.json"
        render_report(json.loads(path.read_text()) if path.exists() else {})


if __name__ == "__main__":
    main()

"""Domain words, defined once: cache folder names, OS builds, artifact kinds, producers and rules.

The scanner, the rules and the renderers all read these registries, so a producer's remedy cannot
silently fall back because a string was typed twice. Sources for every layout fact are in
shared/domain/FIELD-EVIDENCE.md; docs/rules.md cites the evidence of every rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mlcache_audit.vocab import Severity

# -- cache folders --------------------------------------------------------------------------------
E5_CACHE = "com.apple.e5rt.e5bundlecache"  # Core ML's specialization cache (E5RT)
COREAI_CACHE = "coreai-cache"  # Core AI's managed cache (iOS / macOS 27)
EXECUTORCH_COREML = "executorchcoreml"  # ExecuTorch's Core ML backend: asset store and model cache
EXECUTORCH_COREAI = "executorch_coreai"  # ExecuTorch's Core AI backend: bookmarks, staging, locks
MPSGRAPH_SCRATCH = "com.apple.MetalPerformanceShadersGraph"  # in tmp/ or $TMPDIR

# -- OS builds ------------------------------------------------------------------------------------
_BUILD = re.compile(r"^(\d{2})([A-Z])(\d{1,5})([a-z]?)$")


@lru_cache(maxsize=4096)  # a container has a few builds, asked about once per entry
def is_build(name: str) -> bool:
    """`21F79`, `23A5297i`, `24G517`: an Apple OS build string (not `unknown`, not a hash)."""
    return bool(_BUILD.match(name))


@lru_cache(maxsize=4096)
def build_order(build: str) -> tuple:
    """Sort key of an Apple OS build, as Apple numbers them: major number, train letter, then the
    build number, a beta (4-digit number with a letter suffix) before the release of its train.
    22G90 < 23A5297i < 23A344 < 23B85 < 24C101. Anything that is not a build sorts first."""
    m = _BUILD.match(build)
    if not m:
        return (-1, "", -1, 0)
    major, train, number, beta = m.groups()
    return (int(major), train, 0 if beta else 1, int(number))


# -- artifact kinds -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    id: str
    label: str
    model: bool  # holds a model (compared by content), not a cache of one


_KINDS = (
    Kind("compile_leftover", "compile output left in tmp/", True),
    Kind("specialization", "Core ML specialization (E5RT)", False),
    Kind("specialization_partial", "interrupted specialization write", False),
    Kind("coreai_specialization", "Core AI cache entry", False),
    Kind("compiled_model", "compiled model", True),
    Kind("source_model", "source model", True),
    Kind("executorch_asset", "ExecuTorch asset", True),
    Kind("executorch_scratch", "ExecuTorch scratch", False),
    Kind("mpsgraph_scratch", "MPSGraph scratch", False),
    Kind("metal_shader_cache", "Metal shader cache", False),
    Kind("unrecognised", "unrecognised cache layout", False),
    Kind("ort_model_cache", "ONNX Runtime model cache partition", True),
    Kind("xnnpack_cache", "XNNPACK / LiteRT weight cache", False),
    Kind("model_weights", "model weights of another runtime", True),
)
KINDS = tuple(k.id for k in _KINDS)
KIND = {k.id: k for k in _KINDS}
(COMPILE_LEFTOVER, SPECIALIZATION, SPECIALIZATION_PARTIAL, COREAI_SPECIALIZATION, COMPILED_MODEL, SOURCE_MODEL,
 EXECUTORCH_ASSET, EXECUTORCH_SCRATCH, MPSGRAPH_SCRATCH_KIND, METAL_CACHE, UNRECOGNISED, ORT_MODEL_CACHE, XNNPACK_CACHE,
 MODEL_WEIGHTS) = KINDS
MODEL_KINDS = tuple(k.id for k in _KINDS if k.model)


# -- producers --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Producer:
    name: str
    remedy: str


_STABLE_PATH = ("Core ML identifies a model by its path and file metadata, so load the compiled model from one "
                "stable path in Application Support: then every launch reuses one specialization.")
_PRODUCERS = (
    Producer("TensorFlow Lite Core ML delegate",
             "The TensorFlow Lite Core ML delegate converts and compiles the model every time an interpreter is "
             "created, under a new tmp/<GUS>.mlmodelc name, and deletes it only in the delegate's destructor. "
             "Create the interpreter once and reuse it, and make sure it is destroyed (a leaked or killed "
             "interpreter leaves both files). Better: convert the model ahead of time with coremltools and ship "
             "or cache the compiled .mlmodelc in Application Support. " + _STABLE_PATH),
    Producer("ONNX Runtime Core ML EP",
             "ONNX Runtime's Core ML provider recompiles on every session. Set the provider option "
             "ModelCacheDirectory (ONNX Runtime 1.21 and later) to a folder in Application Support so the "
             "compiled model is reused across launches."),
    Producer("ExecuTorch",
             "ExecuTorch's Core ML backend moves replaced assets to tmp/executorchcoreml and stages compiles in "
             "staging/ and temp/; leftovers there mean an interrupted clean-up and can go while the app is not "
             "running. Keep model identifiers stable between launches. assets.db is only ever removed together "
             "with models/."),
    Producer("ExecuTorch Core AI backend",
             "ExecuTorch's Core AI backend keeps a bookmark per specialized model; a bookmark removed alone "
             "orphans its persistent Core AI entry. Clear with clear_cache_for_pte() (ExecuTorch) so the entry, "
             "its staging and its bookmark go together; interrupted .tmp-* publications can go."),
    Producer("MLModel.compileModel(at:)",
             "MLModel.compileModel(at:) returns a bundle in a temporary location. Move it once to Application "
             "Support (FileManager.replaceItemAt), load it from there on later launches, and only compile again "
             "when the source model changes. " + _STABLE_PATH),
    Producer("PyTorch Core ML backend (legacy)",
             "The legacy PyTorch Core ML backend caches compiled models in the temp folder under the SHA-256 of "
             "their spec; they are reused while present. Point its cache folder at Application Support if they "
             "should survive, or let the system purge tmp/."),
    Producer("a per-process compile (model_<pid>_*)",
             "Bundles named model_<pid>_* belong to one process; they are garbage once that process has exited. "
             "Compile once and keep the result at a stable path."),
    Producer("Core ML (e5rt)",
             "Core ML re-specializes whenever a model's path or file metadata changes and never removes the old "
             "entry. " + _STABLE_PATH + " Stop the recompiles (see repeated-compile) first."),
    Producer("Core AI",
             "Core AI keys its cache by the model's content (main.hash) and options. Manage it with "
             "AIModelCache.default (or AIModelCache(appGroup:)): deleteEntry(for:options:) or "
             "deleteEntries(for:) when a model is replaced, and Policy.default (purgeable) unless a model must "
             "survive memory pressure (.persistent keeps it until an OS update). Ship whole .aimodel packages: a "
             "half-copied one poisons its entry."),
    Producer("MPSGraph",
             "MPSGraph writes per-process scratch (mpsgraph-<pid>-<stamp>) and often leaves it when the process "
             "ends; it is garbage once that pid is gone."),
    Producer("Metal", "Metal shader caches are rebuilt on demand; not Core ML growth."),
    Producer("Hugging Face hub", "Old snapshot revisions pile up; delete revisions you no longer load "
             "(`hf cache rm` / `huggingface-cli delete-cache` removes a revision with its blobs)."),
    Producer("ONNX Runtime model cache",
             "ONNX Runtime names a ModelCacheDirectory entry by the model's COREML_CACHE_KEY metadata, else by a "
             "hash of the model's path, which changes with every app install or update on iOS and strands the old "
             "entry. Set COREML_CACHE_KEY in the model's metadata (a stable id per model version) so one entry is "
             "reused; an entry goes only as its whole <key>/ folder, while no session uses it."),
    Producer("MediaPipe / LiteRT",
             "MediaPipe's LlmInference and LiteRT-LM keep an XNNPACK weight cache (<model>.xnnpack_cache) and "
             "GPU program caches in the cache folder they are given (tmp/ by default on iOS), about the model's "
             "size. Give each model version its own file name (a stale cache under a reused name crashes the "
             "engine) and delete a model's caches when the model itself is deleted."),
    Producer("WhisperKit",
             "WhisperKit downloads each model variant into its own folder (MelSpectrogram, AudioEncoder, "
             "TextDecoder): every bundle of a variant is needed to load it. Delete unused variants whole, "
             "from the app (WhisperKit's model folder) rather than bundle by bundle."),
    Producer("model weights",
             "Weights of other on-device runtimes (safetensors, GGUF, MLX): delete a revision or variant the app "
             "no longer loads, from the app or with its downloader's own tool."),
)
PRODUCER = {p.name: p for p in _PRODUCERS}
DEFAULT_REMEDY = PRODUCER["MLModel.compileModel(at:)"].remedy


def remedy_of(producer: str | None) -> str:
    """The remedy for a producer; an unknown name is a bug (a KeyError in tests), not a silent default."""
    return PRODUCER[producer].remedy if producer is not None else DEFAULT_REMEDY


# -- rules ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    opt_in: bool  # acted on only when asked (--include-persistent, --only)
    title: str
    evidence: str  # what a finding of this rule rests on (docs/rules.md cites the sources)
    repair: bool = False  # its targets are broken, not dead weight: repair bytes, acted on only by --only


_RULES = (
    Rule("repeated-compile", Severity.HIGH, False, "The same model is compiled again and again",
         "two or more compile outputs in tmp/ with byte-identical content (full xxh3-128 of every file)"),
    Rule("tmp-compile-leftover", Severity.MEDIUM, False, "On-device compile output left in tmp/",
         "a producer's documented tmp/ name; the last copy of every model is kept"),
    Rule("stale-os-build", Severity.MEDIUM, False, "Caches for an older OS build",
         "an E5RT or Core AI build folder older than the newest build present in any Core ML or Core AI "
         "cache of the same container (or the running OS build)"),
    Rule("redundant-specialization", Severity.MEDIUM, False, "Re-specializations of one model",
         "entries of one layout created in different loads, each paired one-to-one with a repeated compile "
         "copy in tmp/ by modification time, or seen appearing in different launches by `mlcache watch`"),
    Rule("possible-respecialization", Severity.INFO, False, "Possible re-specializations (not proven)",
         "entries alike in layout and size from different load bursts, with no compile copy or watch "
         "history to prove they are one model: 0 bytes reclaimable"),
    Rule("interrupted-specialization", Severity.MEDIUM, False, "Interrupted specialization writes",
         "an E5RT `.tmp.<pid>[_<n>].bundle` whose pid is not running (always, in an offline copy)"),
    Rule("mpsgraph-scratch", Severity.MEDIUM, False, "MPSGraph scratch of exited processes",
         "an `mpsgraph-<pid>-<stamp>` folder whose pid is not running (always, in an offline copy)"),
    Rule("executorch-orphan", Severity.MEDIUM, False, "ExecuTorch assets its index no longer knows",
         "an asset in the asset store (assets.db present, no version.txt) that MODEL_ASSETS_STORE does not list"),
    Rule("executorch-scratch", Severity.MEDIUM, False, "ExecuTorch staging and temporary files",
         "ExecuTorch's own staging/ and temp/ folders and interrupted .tmp-* publications"),
    Rule("coreai-cache", Severity.INFO, False, "Core AI cache entries of the current OS build",
         "Core AI's cache layout; entries are linked to a source .aimodel by main.hash when one is present: "
         "reported, never reclaimed by default"),
    Rule("duplicate-persistent-model", Severity.LOW, True, "The same model stored at several persistent paths",
         "byte-identical bundles (full xxh3-128 of every file) at several persistent paths"),
    Rule("old-model-version", Severity.LOW, True, "Older versions of a model kept beside the current one",
         "the same name, type, inputs and outputs with different bytes; the newest version stays"),
    Rule("ort-cache-keys", Severity.LOW, False, "One model cached under several ONNX Runtime keys",
         "ONNX Runtime ModelCacheDirectory entries whose model.txt names one model: reported, 0 bytes this round "
         "(no evidence says which key a session will open next)"),
    Rule("model-runtime-cache", Severity.INFO, False, "Caches and weights of other on-device runtimes",
         "MediaPipe / LiteRT `*.xnnpack_cache`, `*_mldrift_program_cache.bin`, ONNX Runtime model cache entries, "
         "and safetensors / GGUF / MLX weights: ML bytes, reported, 0 bytes reclaimable (nothing proves the model "
         "left the app)"),
    Rule("poisoned-entry", Severity.HIGH, True, "Cache entries that make every load fail",
         "a full-bundle E5RT entry missing resources.bin while its siblings have one, or a Core AI entry whose "
         "source .aimodel's main.hash is not the SHA-256 of its main.mlirb: delete to repair (repair bytes, never "
         "reclaimable bytes); removed only with --only poisoned-entry", repair=True),
    Rule("unrecognised-cache-layout", Severity.INFO, False, "Unrecognised layout inside a known cache",
         "none: listed and sized, never reclaimed"),
)
RULE = {r.id: r for r in _RULES}
RULES: dict[str, tuple[str, bool, str]] = {r.id: (r.severity, r.opt_in, r.title) for r in _RULES}
DEFAULT_RULES = tuple(r.id for r in _RULES if not r.opt_in)
REPAIR_RULES = frozenset(r.id for r in _RULES if r.repair)  # never in --include-persistent: named with --only

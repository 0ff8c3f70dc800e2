"""Per-sample result files in one output folder, for every command that writes them (explain; concepts, spray and
evaluate when they come): the names, what happens when two inputs want one name, and all-or-nothing completion.

- Names: each sample has a natural name (its file's stem, `stem_K` for sample K of a batch). A name that only one
  sample wants is kept; where several want one name (compared case-insensitively, as macOS and Windows do), the
  first in input order keeps it and the others get `NAME-2`, `NAME-3`, ... (the smallest number whose name no other
  sample has or wants), so a real file `a-2.npy` keeps `a-2` and the names do not depend on the file system.
- Completion: a sample's files are written into a temporary folder inside the output folder and moved into place
  together (os.replace) with SIGINT and SIGTERM held off for those few renames; a sample is then recorded as one
  JSON line in `index.jsonl` (name, source file and sample, the files, and what the command adds). After SIGINT
  or SIGTERM every sample is complete or absent, and no temporary file is left (SIGTERM is handled as SIGINT).
  SIGKILL or a power cut can leave a sample's files without its index line: such a sample counts as not done.
- Resuming: with skip_existing, a sample whose index line has the same name, the same source (path, size,
  modification time, sample) and the same settings, and whose files all exist, is not redone.
"""
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from typing import NamedTuple

INDEX = "index.jsonl"
_TMP_PREFIX = ".onnx-lrp-tmp-"


class Renamed(NamedTuple):
    position: int  # in the list given to unique_names
    natural: str
    name: str
    holder: int  # the position of the sample that keeps `natural`


def unique_names(naturals):
    """Distinct names for samples that want `naturals` (in input order) -> (names, the renamed ones)."""
    wanted = {}
    for k, name in enumerate(naturals):
        wanted.setdefault(name.casefold(), k)
    taken, names, renamed = set(wanted), [], []
    for k, name in enumerate(naturals):
        holder = wanted[name.casefold()]
        if holder == k:
            names.append(name)
            continue
        n = 2
        while f"{name}-{n}".casefold() in taken:
            n += 1
        names.append(f"{name}-{n}")
        taken.add(f"{name}-{n}".casefold())
        renamed.append(Renamed(k, name, names[-1], holder))
    return names, renamed


def source_identity(path):
    """What identifies an input file for resuming: its real path, size and modification time."""
    stat = os.stat(path)
    return [os.path.realpath(path), stat.st_size, stat.st_mtime_ns]


class SampleFiles:
    """The files of one sample being written: `path(suffix)` is where to write NAME+suffix (a temporary path)."""

    def __init__(self, writer, name):
        self.name, self._writer, self.suffixes = name, writer, []

    def path(self, suffix):
        if suffix in self.suffixes:
            raise ValueError(f"{self.name}{suffix} is written twice")
        self.suffixes.append(suffix)
        return os.path.join(self._writer._tmp_dir(), self.name + suffix)


class SampleWriter:
    """with SampleWriter(out_dir, settings=..., skip_existing=...) as writer:
           with writer.sample(name, source, record) as files: save to files.path(".relevance.npy"), ...

    settings: anything JSON can hold that decides the results (model, options); the index keeps its hash, and
    resuming redoes a sample written with other settings. The folder is created with the first sample (a failure
    before it writes nothing).
    Signal handlers are installed only from the main thread.
    """

    def __init__(self, out_dir, *, settings=None, skip_existing=False):
        self.out_dir = out_dir
        self.settings = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.skip_existing = skip_existing
        self.written = []  # names completed by this writer, in order
        self.names = []  # every sample's name, in input order (name_samples)
        self._tmp = None
        self._critical = False
        self._pending = None
        self._handlers = {}
        self._index = self._read_index()

    def name_samples(self, naturals):
        """The names of all the samples of this run, from their natural names in input order (unique_names); the
        index lists them in this order. -> (names, the renamed ones)"""
        names, renamed = unique_names(naturals)
        self.names = names
        return names, renamed

    # -- the index -------------------------------------------------------------------------------------------------
    def _read_index(self):
        """{name: its last complete record}; a torn last line (SIGKILL while appending) is ignored."""
        entries = {}
        try:
            with open(os.path.join(self.out_dir, INDEX), encoding="utf-8") as f:
                lines = f.read().split("\n")
        except (FileNotFoundError, NotADirectoryError):
            return entries
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                entries.pop(entry["name"], None)
                entries[entry["name"]] = entry
        return entries

    def done(self, name, source):
        """With skip_existing: whether `name` is complete in the folder from this source and these settings."""
        entry = self._index.get(name)
        return bool(self.skip_existing and entry is not None and entry.get("source") == _plain(source)
                    and entry.get("settings") == self.settings
                    and all(os.path.isfile(os.path.join(self.out_dir, f)) for f in entry.get("files", [])))

    def entry(self, name):
        return self._index.get(name)

    # -- signals -----------------------------------------------------------------------------------------------------
    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._handlers[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, frame):
        if self._critical:
            self._pending = signum
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    @contextmanager
    def _held_signals(self):
        """SIGINT and SIGTERM wait until the block is done (a few renames), then interrupt as usual."""
        self._critical = True
        try:
            yield
        finally:
            self._critical = False
        if self._pending is not None:
            signum, self._pending = self._pending, None
            raise KeyboardInterrupt(signal.Signals(signum).name)

    def __exit__(self, kind, exc, tb):
        self._critical = True
        try:
            if kind is None and self.written:
                self._compact_index()
        finally:
            self._remove_tmp()
            for sig, handler in self._handlers.items():
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)
            self._handlers = {}
            self._critical = False
        if self._pending is not None and kind is None:
            self._pending = None
            raise KeyboardInterrupt

    # -- files -------------------------------------------------------------------------------------------------------
    def _tmp_dir(self):
        if self._tmp is None:
            os.makedirs(self.out_dir, exist_ok=True)
            _remove_stale(self.out_dir)
            self._tmp = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=self.out_dir)
        return self._tmp

    def _remove_tmp(self):
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @contextmanager
    def sample(self, name, source, record=None):
        """Write a sample's files in the block; they appear together when it ends, with their index line. source:
        JSON data that identifies the input (e.g. {"file": ..., "identity": source_identity(path), "sample": k});
        record: more fields for the index line."""
        files = SampleFiles(self, name)
        try:
            yield files
        except BaseException:
            if self._tmp is not None:
                for suffix in files.suffixes:
                    _remove(os.path.join(self._tmp, name + suffix))
            raise
        tmp = self._tmp_dir()
        present = [name + s for s in files.suffixes if os.path.exists(os.path.join(tmp, name + s))]
        entry = {"name": name, **(record or {}), "files": present, "source": _plain(source),
                 "settings": self.settings}
        line = json.dumps(entry, default=str) + "\n"
        entry = json.loads(line)
        before = self._index.get(name, {}).get("files", [])
        with self._held_signals():
            for file in present:
                os.replace(os.path.join(tmp, file), os.path.join(self.out_dir, file))
            for file in before:  # what the sample's earlier result had and this one has not (e.g. an overlay)
                if file not in present and os.path.basename(file) == file:
                    _remove(os.path.join(self.out_dir, file))
            with open(os.path.join(self.out_dir, INDEX), "a", encoding="utf-8") as f:
                f.write(line)
            self._index.pop(name, None)
            self._index[name] = entry
            self.written.append(name)

    def _compact_index(self):
        """One line per name (this run's samples in input order, then the folder's others), replacing the appended
        log."""
        order = [n for n in self.names + self.written if n in self._index] + list(self._index)
        path = os.path.join(self.out_dir, INDEX)
        fd, tmp = tempfile.mkstemp(prefix=INDEX + ".", dir=self._tmp_dir())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(self._index[n], default=str) + "\n" for n in dict.fromkeys(order))
        os.replace(tmp, path)


def _plain(value):
    """As the index holds it (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _remove_stale(out_dir):
    """Temporary folders of runs that died without cleaning up (SIGKILL): their process is gone."""
    for entry in os.listdir(out_dir):
        if not entry.startswith(_TMP_PREFIX) or not os.path.isdir(os.path.join(out_dir, entry)):
            continue
        pid = entry[len(_TMP_PREFIX):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(out_dir, entry), ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True

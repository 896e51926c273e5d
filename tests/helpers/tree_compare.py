#!/usr/bin/env python3
"""tree_compare.py A B: compares two directory trees entry by entry: type, mode, owner,
mtime (ns), size, content hash, link target, hard-link group and sparseness. Prints the
first differences and "N entries compared, M differ"; exits 1 when something differs.
Used by the repository and storage tests through tree_compare in tests/lib.sh."""
import hashlib, os, stat, sys
def scan(root):
    out, groups = {}, {}
    def add(path, rel):
        st = os.lstat(path)
        e = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode),
             "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime_ns}
        if stat.S_ISLNK(st.st_mode):
            e["target"] = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            e["size"], e["sha256"] = st.st_size, h.hexdigest()
            e["sparse"] = st.st_size > (1 << 20) and st.st_blocks * 512 < st.st_size // 2
            if st.st_nlink > 1:
                groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
                e["links"] = (st.st_dev, st.st_ino)
        out[rel] = e
    add(root, b".")
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            add(p, os.path.relpath(p, root))
    for e in out.values():
        if "links" in e:
            e["links"] = sorted(groups[e["links"]])
    return out
a, b = scan(os.fsencode(sys.argv[1])), scan(os.fsencode(sys.argv[2]))
bad = 0
for rel in sorted(set(a) | set(b)):
    if a.get(rel) != b.get(rel):
        bad += 1
        if bad <= 10:
            print(f"differs: {rel!r}: {a.get(rel)} != {b.get(rel)}")
print(f"{len(a)} entries compared, {bad} differ")
sys.exit(1 if bad else 0)

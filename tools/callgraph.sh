#!/bin/sh
# tools/callgraph.sh KNOWN OBJ... -- the layering rule: no two .c files call each other.
#
# From the objects' symbol tables (nm), lists for each source file the other files whose
# functions (or data) it uses, then every pair that uses each other both ways. Pairs named in
# the file KNOWN (one "a.c b.c" per line, # comments) are loops still being untangled: the
# check fails on a loop not listed there, and on a listed one that is gone (so the list only
# shrinks). Prints the edges with -v.
set -eu
verbose=0
[ "${1:-}" = "-v" ] && { verbose=1; shift; }
known=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for o in "$@"; do
    src=$(echo "$o" | sed -E 's#^.*/obj/##; s#\.o$#.c#')
    nm "$o" | awk -v s="$src" '$2 ~ /^[TDBR]$/ { print $3, s }' >> "$tmp/defs"
    nm "$o" | awk -v s="$src" '$1 == "U" { print $2, s }' >> "$tmp/uses"
done
sort -u "$tmp/defs" > "$tmp/defs.s"
sort -u "$tmp/uses" > "$tmp/uses.s"
# symbol definer user -> "user definer"
join "$tmp/defs.s" "$tmp/uses.s" | awk '$2 != $3 { print $3, $2 }' | sort -u > "$tmp/edges"
[ "$verbose" = 1 ] && awk '{ print $1, "->", $2 }' "$tmp/edges"
awk '{ e[$1 " " $2] = 1 } END { for (k in e) { split(k, p, " ");
        if ((p[2] " " p[1]) in e && p[1] < p[2]) print p[1], p[2] } }' "$tmp/edges" | sort > "$tmp/loops"
grep -v '^#' "$known" | grep . | sort > "$tmp/known" || true
status=0
comm -23 "$tmp/loops" "$tmp/known" | while read -r a b; do
    echo "callgraph: $a and $b call each other (a new loop: break it, do not list it)"
done | grep . && status=1
comm -13 "$tmp/loops" "$tmp/known" | while read -r a b; do
    echo "callgraph: $a and $b no longer call each other: remove them from $known"
done | grep . && status=1
n=$(wc -l < "$tmp/loops")
[ $status = 0 ] && echo "callgraph: $n file pairs call each other, each listed in $known"
exit $status

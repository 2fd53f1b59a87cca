# Reading training runs in shell tests (source it): the logged step lines and the full-precision
# scalars of metrics.jsonl, so that runs can be compared with diff.

# The step lines "step k/N loss X lr Y grad_norm Z" of log $1, from step $2 on.
losses() {
  grep -o -E 'step [0-9]+/[0-9]+ loss [0-9.a-z]+ lr [0-9.e-]+ grad_norm [0-9.a-z]+' "$1" |
    awk -v from="$2" '{ split($2, s, "/"); if (s[1] >= from) print }'
}

# "step loss grad_norm" at full precision from metrics.jsonl file $1, from step $2 on.
exact_metrics() {
  grep '"train/loss"' "$1" |
    sed -E 's/^\{"step":([0-9]+),.*"train\/loss":([^,]+),.*"train\/grad_norm":([^,]+),.*/\1 \2 \3/' |
    awk -v from="$2" '$1 >= from'
}

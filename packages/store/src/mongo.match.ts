// Filter shapes every backend can serve from an index.
//
// A one-value list is matched as an equality, not as `$in: [v]`: the two mean the same, but
// FerretDB hands only top-level equalities to its storage (`_jsonb->'f' @> v`, which the test
// database's GIN indexes answer) and evaluates `$in` over every document the rest of the filter
// leaves, e.g. every device of the app. MongoDB plans both alike.
export function oneOf<T>(values: Iterable<T>): T | { $in: T[] } {
  const list = [...new Set(values)];
  return list.length === 1 ? list[0]! : { $in: list };
}

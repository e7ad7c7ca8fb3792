// Which checks of a results document's health mean "do not trust these
// numbers": the API names them in health.failed; each has a warning
// sentence that starts with its name in words ("sample ratio mismatch:
// ..."). The other warnings (units still maturing, the sample size still
// needed) are notes.

// [health.failed's name, the warning's start, the name in a sentence]
const CHECKS = [
  ['srm', 'sample ratio mismatch', 'a sample ratio mismatch'],
  ['too_few_units', 'too few units', 'too few units'],
  ['multiple_exposures', 'multiple exposures', 'units exposed to several variants'],
  ['crossover', 'crossover', 'crossover between variants'],
  ['pre_exposure_imbalance', 'pre-exposure imbalance', 'a pre-exposure imbalance'],
  ['opt_outs_differ', 'opt-outs differ', 'opt-outs that differ between arms'],
];

// trustProblems returns the failed trust checks of a results document's
// health: [{name, phrase, text}], name and phrase in words, text the API's
// own sentence. A check the UI does not know yet is shown by its name.
export function trustProblems(health) {
  const warnings = (health && health.warnings) || [];
  const failed = (health && health.failed) || [];
  return failed.map((id) => {
    const c = CHECKS.find(([name]) => name === id);
    const start = c ? c[1] : id.replace(/_/g, ' ');
    const text = warnings.find((w) => w.startsWith(start)) || start;
    return {name: start, phrase: c ? c[2] : start, text};
  });
}

// notes returns the warnings that are not trust problems.
export function notes(health) {
  const warnings = (health && health.warnings) || [];
  const starts = trustProblems(health).map((p) => p.name);
  return warnings.filter((w) => !starts.some((s) => w.startsWith(s)));
}

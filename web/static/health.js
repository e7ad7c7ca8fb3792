// Which of the API's health warnings mean "do not trust these numbers":
// the trust checks. The API writes each warning as a sentence that starts
// with its check's name ("sample ratio mismatch: ..."); the others (units
// still maturing, the sample size still needed) are notes.

// [the warning's start, the check's name, the name in a sentence]
const CHECKS = [
  ['sample ratio mismatch', 'sample ratio mismatch', 'a sample ratio mismatch'],
  ['too few units', 'too few units', 'too few units'],
  ['multiple exposures', 'multiple exposures', 'units exposed to several variants'],
  ['crossover', 'crossover', 'crossover between variants'],
  ['pre-exposure imbalance', 'pre-exposure imbalance', 'a pre-exposure imbalance'],
  ['opt-outs differ', 'opt-outs differ', 'opt-outs that differ between arms'],
];

// trustProblems returns the failed trust checks of a results document's
// health: [{name, phrase, text}], name and phrase in words, text the API's
// own sentence. A failed SRM check is found from its structured result too.
export function trustProblems(health) {
  const out = [];
  const warnings = (health && health.warnings) || [];
  for (const w of warnings) {
    const c = CHECKS.find(([prefix]) => w.startsWith(prefix));
    if (c) out.push({name: c[1], phrase: c[2], text: w});
  }
  if (health && health.srm && health.srm.ok === false && !out.some((p) => p.name === CHECKS[0][1])) {
    out.unshift({name: CHECKS[0][1], phrase: CHECKS[0][2],
      text: 'sample ratio mismatch: the units per variant do not match the configured weights (p = ' + health.srm.p_value + ')'});
  }
  return out;
}

// notes returns the warnings that are not trust problems.
export function notes(health) {
  const warnings = (health && health.warnings) || [];
  return warnings.filter((w) => !CHECKS.some(([prefix]) => w.startsWith(prefix)));
}

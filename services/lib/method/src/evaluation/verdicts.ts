// Whether a judge output produced a verdict. The verifier reads a judge's verdict from the FIRST box
// (docs/verifier.md), so an output whose first box holds something else (say the judge's own answer, then
// `\boxed{No}`) is scored on that first box and counts as wrong even when a later box holds the right
// verdict. These statuses tell the cases apart.
import { allBoxed } from '../datasets/boxed.js';

/**
 * `verdict`: the first box holds a verdict of the style (Yes/No or A/B); `none`: no complete box at all;
 * `box-before-verdict`: the first box is not a verdict but a later one is; `invalid`: boxes, none a verdict.
 */
export type VerdictStatus = 'verdict' | 'none' | 'box-before-verdict' | 'invalid';

/** The verdicts of a judge style: `[positive, negative]` (Yes/No for yes/no items, A/B otherwise). */
export function verdictOptions(style: string): readonly [string, string] {
  return style === 'pointwise-yesno' ? ['Yes', 'No'] : ['A', 'B'];
}

/** The verdict status of one judge output (boxes read as the verifier reads them: brace-matched, trimmed). */
export function verdictStatus(output: string, style: string): VerdictStatus {
  const options = verdictOptions(style);
  const boxes = allBoxed(output.slice(0, 1 << 20)).map((b) => b.trim());
  if (boxes.length === 0) return 'none';
  if (options.includes(boxes[0] as string)) return 'verdict';
  return boxes.some((b) => options.includes(b)) ? 'box-before-verdict' : 'invalid';
}

// The synthetic problem families of the embedded default dataset. Each family turns a seeded RNG and a
// difficulty (1..3) into one problem: a SHORT question (fits a character-level model's context), the
// integer answer as a string label, and a worked solution (a few compact steps ending in `\boxed{answer}`)
// for supervised warm-up. Every number is drawn from ranges sized so a tiny model can learn level 1 in a
// short demo and still has room to improve on levels 2 and 3.
import type { Rng } from './random.js';

/** The problem families of the built-in generator. */
export const FAMILIES = ['add', 'sub', 'mul', 'expr', 'linear', 'compare', 'remainder'] as const;
export type Family = (typeof FAMILIES)[number];

/** Difficulty levels: 1 = easy (one or two digits), 2 = medium, 3 = hard (still short). */
export const DIFFICULTIES = [1, 2, 3] as const;
export type Difficulty = (typeof DIFFICULTIES)[number];

/** What a family generator produces (ids and split membership are added by the dataset layer). */
export interface GeneratedProblem {
  readonly family: Family;
  readonly difficulty: Difficulty;
  /** The question, without the answer-format instruction. */
  readonly question: string;
  /** The gold answer: an integer in plain decimal (a leading '-' for negatives). */
  readonly answer: string;
  /** Step-by-step worked solution ending in `\boxed{answer}`. */
  readonly solution: string;
}

/** A one-line description of each family and of what its difficulty levels mean (shown in docs and CLI). */
export const FAMILY_INFO: Readonly<
  Record<Family, { title: string; levels: readonly [string, string, string] }>
> = {
  add: {
    title: 'multi-digit addition, column by column with carries',
    levels: ['1-2 digit + 1-2 digit', '2-3 digit + 2-3 digit', '3-4 digit + 3-4 digit'],
  },
  sub: {
    title: 'multi-digit subtraction, column by column with borrows',
    levels: [
      '2 digit - smaller',
      '3 digit - 2-3 digit (result >= 0)',
      '3-4 digit - 3-4 digit (may be negative)',
    ],
  },
  mul: {
    title: 'multiplication by place-value decomposition',
    levels: ['1 digit * 1 digit', '2 digit * 1 digit', '2 digit * 2 digit'],
  },
  expr: {
    title: 'mixed expressions: precedence of * over +/-, parentheses; one reduction per step',
    levels: ['a+b*c style (3 operands)', '3 operands with parentheses', '4 operands, parentheses'],
  },
  linear: {
    title: 'simple linear equations in x with an integer solution',
    levels: ['x+b=c or x-b=c', 'ax+b=c', 'ax+b=cx+d (solution may be negative)'],
  },
  compare: {
    title: 'which of two values is larger (answer: the larger value)',
    levels: ['two numbers', 'a product against a number', 'two small expressions'],
  },
  remainder: {
    title: 'remainder of an integer division',
    levels: ['2 digit mod 1 digit', '3 digit mod 1 digit', '3-4 digit mod 2 digit'],
  },
};

type Generator = (rng: Rng, difficulty: Difficulty) => Omit<GeneratedProblem, 'family' | 'difficulty'>;

/** A random integer with a number of digits drawn from [minDigits, maxDigits]. */
function digits(rng: Rng, minDigits: number, maxDigits: number): number {
  const d = rng.int(minDigits, maxDigits);
  return d === 1 ? rng.int(0, 9) : rng.int(10 ** (d - 1), 10 ** d - 1);
}

function boxed(answer: number | string): string {
  return `\\boxed{${answer}}`;
}

/** Column addition steps for non-negative a, b: "7+8=15, 4+3+1=8" (units first, carry added in). */
function additionSteps(a: number, b: number): string[] {
  const da = String(a).split('').reverse();
  const db = String(b).split('').reverse();
  const steps: string[] = [];
  let carry = 0;
  for (let i = 0; i < Math.max(da.length, db.length); i++) {
    const x = Number(da[i] ?? 0);
    const y = Number(db[i] ?? 0);
    const s = x + y + carry;
    steps.push(`${x}+${y}${carry ? '+1' : ''}=${s}`);
    carry = s >= 10 ? 1 : 0;
  }
  return steps;
}

/** Column subtraction steps for a >= b >= 0: "17-8=9, 4-1-3=0" (a borrow shows as 1 in front / "-1"). */
function subtractionSteps(a: number, b: number): string[] {
  const da = String(a).split('').reverse();
  const db = String(b).split('').reverse();
  const steps: string[] = [];
  let borrow = 0;
  for (let i = 0; i < da.length; i++) {
    const x = Number(da[i]);
    const y = Number(db[i] ?? 0);
    const top = x - borrow;
    const needBorrow = top < y;
    const lhs = `${needBorrow ? '1' : ''}${x}${borrow ? '-1' : ''}`;
    const value = top + (needBorrow ? 10 : 0) - y;
    steps.push(`${lhs}-${y}=${value}`);
    borrow = needBorrow ? 1 : 0;
  }
  return steps;
}

const add: Generator = (rng, level) => {
  const [lo, hi] = level === 1 ? [1, 2] : level === 2 ? [2, 3] : [3, 4];
  const a = digits(rng, lo, hi);
  const b = digits(rng, lo, hi);
  const sum = a + b;
  return {
    question: `${a}+${b}=?`,
    answer: String(sum),
    solution: `${additionSteps(a, b).join(', ')}, so ${a}+${b}=${sum}. ${boxed(sum)}`,
  };
};

const sub: Generator = (rng, level) => {
  let a: number;
  let b: number;
  if (level === 1) {
    a = rng.int(10, 99);
    b = rng.int(1, a);
  } else if (level === 2) {
    a = rng.int(100, 999);
    b = digits(rng, 2, 3);
    if (b > a) [a, b] = [b, a];
  } else {
    a = digits(rng, 3, 4);
    b = digits(rng, 3, 4);
  }
  const diff = a - b;
  const big = Math.max(a, b);
  const small = Math.min(a, b);
  const steps = subtractionSteps(big, small).join(', ');
  const solution =
    diff >= 0
      ? `${steps}, so ${a}-${b}=${diff}. ${boxed(diff)}`
      : `${b}>${a}, so ${a}-${b}=-(${b}-${a}). ${steps}, so ${a}-${b}=${diff}. ${boxed(diff)}`;
  return { question: `${a}-${b}=?`, answer: String(diff), solution };
};

const mul: Generator = (rng, level) => {
  const a = level === 1 ? rng.int(1, 9) : rng.int(10, 99);
  const b = level === 3 ? rng.int(10, 99) : rng.int(2, 9);
  const product = a * b;
  let solution: string;
  if (level === 1) {
    solution = `${a}*${b}=${product}. ${boxed(product)}`;
  } else if (level === 2) {
    // 38*7 = 30*7+8*7 = 210+56 = 266
    const tens = Math.floor(a / 10) * 10;
    const ones = a % 10;
    solution =
      ones === 0
        ? `${a}*${b}=${tens / 10}*${b}*10=${(tens / 10) * b}*10=${product}. ${boxed(product)}`
        : `${a}*${b}=${tens}*${b}+${ones}*${b}=${tens * b}+${ones * b}=${product}. ${boxed(product)}`;
  } else {
    // 47*38 = 47*30+47*8 = 1410+376 = 1786
    const tens = Math.floor(b / 10) * 10;
    const ones = b % 10;
    solution =
      ones === 0
        ? `${a}*${b}=${a}*${tens / 10}*10=${(a * tens) / 10}*10=${product}. ${boxed(product)}`
        : `${a}*${b}=${a}*${tens}+${a}*${ones}=${a * tens}+${a * ones}=${product}. ${boxed(product)}`;
  }
  return { question: `${a}*${b}=?`, answer: String(product), solution };
};

// ---- expressions: a tiny tree with step-by-step reduction --------------------------------------------

/** An arithmetic expression tree over integers with +, - and *; `paren` marks written parentheses. */
export type Expr =
  | { readonly kind: 'num'; readonly value: number }
  | {
      readonly kind: 'op';
      readonly op: '+' | '-' | '*';
      readonly left: Expr;
      readonly right: Expr;
      readonly paren: boolean;
    };

const num = (value: number): Expr => ({ kind: 'num', value });
const op = (o: '+' | '-' | '*', left: Expr, right: Expr, paren = false): Expr => ({
  kind: 'op',
  op: o,
  left,
  right,
  paren,
});

/** Writes an expression without spaces; negative literals (only produced by reduction) are bracketed. */
export function renderExpr(e: Expr): string {
  if (e.kind === 'num') return e.value < 0 ? `(${e.value})` : String(e.value);
  const body = `${renderExpr(e.left)}${e.op}${renderExpr(e.right)}`;
  return e.paren ? `(${body})` : body;
}

/** The value of an expression. */
export function evalExpr(e: Expr): number {
  if (e.kind === 'num') return e.value;
  const l = evalExpr(e.left);
  const r = evalExpr(e.right);
  return e.op === '+' ? l + r : e.op === '-' ? l - r : l * r;
}

/**
 * One reduction step: evaluates the first operation whose operands are both numbers, searching
 * left-first — because the tree already encodes precedence, this is the order a person works in.
 */
function reduceOnce(e: Expr): Expr {
  if (e.kind === 'num') return e;
  if (e.left.kind === 'num' && e.right.kind === 'num') return num(evalExpr(e));
  if (e.left.kind === 'op') return { ...e, left: reduceOnce(e.left) };
  return { ...e, right: reduceOnce(e.right) };
}

/** The chain "3+4*5=3+20=23" from the expression to its value. */
export function reductionChain(e: Expr): string[] {
  const chain = [renderExpr(e)];
  let cur = e;
  while (cur.kind === 'op') {
    cur = reduceOnce(cur);
    // the final value stands alone, so a negative result needs no brackets
    chain.push(cur.kind === 'num' ? String(cur.value) : renderExpr(cur));
  }
  return chain;
}

function randomOp(rng: Rng, ops: readonly ('+' | '-' | '*')[]): '+' | '-' | '*' {
  return rng.pick(ops);
}

/** A random expression over `n` operands (2..4), honouring precedence; parentheses where the level allows. */
function randomExpr(rng: Rng, level: Difficulty): Expr {
  const small = (): Expr => num(rng.int(1, level === 1 ? 9 : 12));
  if (level === 1) {
    // a o b * c  or  a * b o c  (one multiplication, one +/-)
    const o = randomOp(rng, ['+', '-']);
    return rng.bool() ? op(o, small(), op('*', small(), small())) : op(o, op('*', small(), small()), small());
  }
  if (level === 2) {
    // (a o b) * c  or  a * (b o c)  or  a o (b o c)
    const o = randomOp(rng, ['+', '-']);
    const shape = rng.int(0, 2);
    if (shape === 0) return op('*', op(o, small(), small(), true), small());
    if (shape === 1) return op('*', small(), op(o, small(), small(), true));
    return op(randomOp(rng, ['+', '-']), small(), op(o, small(), small(), true));
  }
  // level 3: four operands, one parenthesised group and precedence around it
  const inner = op(randomOp(rng, ['+', '-']), small(), small(), true);
  const shape = rng.int(0, 2);
  if (shape === 0) return op(randomOp(rng, ['+', '-']), op('*', inner, small()), small());
  if (shape === 1) return op(randomOp(rng, ['+', '-']), small(), op('*', small(), inner));
  return op('*', inner, op(randomOp(rng, ['+', '-']), small(), small(), true));
}

const expr: Generator = (rng, level) => {
  const e = randomExpr(rng, level);
  const value = evalExpr(e);
  const chain = reductionChain(e);
  return {
    question: `${chain[0]}=?`,
    answer: String(value),
    solution: `${chain.join('=')}. ${boxed(value)}`,
  };
};

// ---- equations, comparisons, remainders --------------------------------------------------------------

const linear: Generator = (rng, level) => {
  if (level === 1) {
    const x = rng.int(0, 20);
    const b = rng.int(1, 20);
    if (rng.bool()) {
      const c = x + b;
      return { question: `x+${b}=${c}, x=?`, answer: String(x), solution: `x=${c}-${b}=${x}. ${boxed(x)}` };
    }
    const c = x - b;
    return {
      question: `x-${b}=${c}, x=?`,
      answer: String(x),
      solution: `x=${c}+${b}=${x}. ${boxed(x)}`,
    };
  }
  if (level === 2) {
    const a = rng.int(2, 9);
    const x = rng.int(0, 12);
    const b = rng.int(1, 20);
    const c = a * x + b;
    return {
      question: `${a}x+${b}=${c}, x=?`,
      answer: String(x),
      solution: `${a}x=${c}-${b}=${c - b}, x=${c - b}/${a}=${x}. ${boxed(x)}`,
    };
  }
  // a x + b = c x + d with a > c, integer x in [-9, 12]
  const c = rng.int(1, 6);
  const a = c + rng.int(1, 5);
  const x = rng.int(-9, 12);
  const b = rng.int(1, 20);
  const d = (a - c) * x + b;
  const sign = (v: number): string => (v < 0 ? `-${-v}` : `+${v}`);
  const k = a - c;
  return {
    question: `${a}x+${b}=${c}x${sign(d)}, x=?`,
    answer: String(x),
    solution:
      `${a}x-${c}x=${d}-${b}, ${k}x=${d - b}, ` +
      (k === 1 ? `x=${x}. ${boxed(x)}` : `x=${d - b}/${k}=${x}. ${boxed(x)}`),
  };
};

const compare: Generator = (rng, level) => {
  if (level === 1) {
    const a = rng.int(1, 99);
    let b = rng.int(1, 99);
    while (b === a) b = rng.int(1, 99);
    const m = Math.max(a, b);
    return {
      question: `Larger: ${a} or ${b}?`,
      answer: String(m),
      solution: `${m}>${Math.min(a, b)}. ${boxed(m)}`,
    };
  }
  if (level === 2) {
    const p = rng.int(2, 9);
    const q = rng.int(2, 9);
    const prod = p * q;
    let n = prod + rng.int(-9, 9);
    if (n === prod) n += 1;
    const left = `${p}*${q}`;
    const m = Math.max(prod, n);
    const [first, second] = rng.bool() ? [left, String(n)] : [String(n), left];
    const order = prod > n ? `${prod}>${n}` : `${n}>${prod}`;
    return {
      question: `Larger: ${first} or ${second}?`,
      answer: String(m),
      solution: `${left}=${prod}, ${order}. ${boxed(m)}`,
    };
  }
  // two small expressions (product plus/minus a number), never equal
  const make = (): { text: string; value: number } => {
    const p = rng.int(2, 9);
    const q = rng.int(2, 9);
    const r = rng.int(1, 9);
    return rng.bool()
      ? { text: `${p}*${q}+${r}`, value: p * q + r }
      : { text: `${p}*${q}-${r}`, value: p * q - r };
  };
  const x = make();
  let y = make();
  while (y.value === x.value) y = make();
  const m = Math.max(x.value, y.value);
  const order = x.value > y.value ? `${x.value}>${y.value}` : `${y.value}>${x.value}`;
  return {
    question: `Larger: ${x.text} or ${y.text}?`,
    answer: String(m),
    solution: `${x.text}=${x.value}, ${y.text}=${y.value}, ${order}. ${boxed(m)}`,
  };
};

const remainder: Generator = (rng, level) => {
  const n = level === 1 ? rng.int(10, 99) : level === 2 ? rng.int(100, 999) : rng.int(100, 9999);
  const d = level === 3 ? rng.int(11, 99) : rng.int(2, 9);
  const q = Math.floor(n / d);
  const r = n % d;
  return {
    question: `${n} mod ${d}=?`,
    answer: String(r),
    solution: `${d}*${q}=${d * q}, ${n}-${d * q}=${r}. ${boxed(r)}`,
  };
};

const GENERATORS: Readonly<Record<Family, Generator>> = { add, sub, mul, expr, linear, compare, remainder };

/** Generates one problem of a family and difficulty from the RNG (consumes a family-dependent number of draws). */
export function generateProblem(rng: Rng, family: Family, difficulty: Difficulty): GeneratedProblem {
  const gen = GENERATORS[family];
  return { family, difficulty, ...gen(rng, difficulty) };
}

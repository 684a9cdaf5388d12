"""Formulas in feedback render without the network: LaTeX becomes MathML, code stays code."""

from xattn_edu.grader.math_offline import mathml


def test_inline_and_display_formulas_become_mathml():
    html = mathml("the weights $w_i = e^{s_i}$ sum to one:\n$$\\sum_i w_i = 1$$")
    assert html.count("<math") == 2 and 'display="block"' in html and 'display="inline"' in html
    assert "$" not in html and "the weights" in html


def test_code_prices_and_broken_formulas_are_left_alone():
    text = "run `x = $HOME`, costs 5 $ or \\$3, and ```\n$not math$\n``` then $\\frac{1}{$"
    assert mathml(text) == text

"""Questions read off rows: the kind of each turn from its reference answer, targets from the
`<segK>` it names (not from the groundings), options from the lettered lines."""

from __future__ import annotations

from regionkit.train.questions import Question, chosen_letter, questions


def _turns(*pairs: tuple[str, str]) -> dict:
    messages = []
    for asked, answered in pairs:
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
    return {"messages": messages, "groundings": [{"text": "the dog", "regions": [5]}]}


def test_each_turn_is_a_question_of_the_kind_its_answer_shows():
    row = _turns(
        ("Segment what holds the food.", "<seg2> and <seg0>."),
        ("Find the unicorn.", "<rej>"),
        ("Which is true?\nA. <region0> is left of <region1>\nB. <region0> is above <region1>\n"
         "Answer with the letter.", "B"),
        ("What could I sit on?", "You could sit on <seg1> or <seg3>."),  # MUSE-style
        ("Describe <region1>.", "A brown dog sits on the grass."),
        ("Is it A or B?", "A"),  # a letter, but no lettered options: free text
    )  # fmt: skip
    found = list(questions(row))
    kinds = ["segment", "segment", "choice", "segment", "caption", "caption"]
    assert [q.kind for q in found] == kinds
    assert found[0].targets == (2, 0)  # in the answer's order, from its <segK>
    assert found[1].targets == ()  # a rejection: nothing to segment
    assert found[2] == Question("choice", row["messages"][4]["content"], (), "B", ("A", "B"))
    assert found[3].targets == (1, 3)  # masks among words are still masks to score
    assert found[4].answer == "A brown dog sits on the grass."


def test_a_row_without_dialogue_asks_its_groundings():
    row = {"messages": [], "groundings": [{"text": " the dog ", "regions": [0, 2]}]}
    assert list(questions(row)) == [Question("refer", "Segment the dog.", (0, 2))]


def test_the_chosen_letter_is_the_first_standalone_option_letter():
    assert chosen_letter("B", ("A", "B")) == "B"
    assert chosen_letter("I think C. Because", ("A", "B", "C")) == "C"
    assert chosen_letter("A dog: D", ("B", "D")) == "D"  # "A" is not offered
    assert chosen_letter("none of them", ("A", "B")) is None

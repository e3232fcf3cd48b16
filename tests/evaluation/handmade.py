"""The handmade steering example both evaluation test modules check by hand: 9 questions, their
references, the unsteered answers and the steered ones."""

REFERENCES = {
    "y1": ("yes", "yes/no"), "y2": ("yes", "yes/no"), "y3": ("yes", "yes/no"), "y4": ("yes", "yes/no"),
    "n1": ("no", "yes/no"), "s1": ("circle", "shape"), "s2": ("triangle", "shape"),
    "c1": ("red", "color"), "c2": ("blue", "color"),
}
BASELINE = {"y1": "yes", "y2": "yes", "y3": "yes", "y4": "yes", "n1": "no", "s1": "circle", "s2": "triangle", "c1": "red", "c2": "green"}
STEERED = {"y1": "no", "y2": "No.", "y3": "no", "y4": "yes", "n1": "no", "s1": "no", "s2": "triangle", "c1": "red", "c2": "blue"}


def records(predictions):
    return [{"id": i, "prediction": p, "answer": REFERENCES[i][0], "answer_type": REFERENCES[i][1]} for i, p in predictions.items()]

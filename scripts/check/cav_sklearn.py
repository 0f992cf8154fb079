#!/usr/bin/python3
"""scikit-learn's fits of the CAV classifiers, for pipeline/cav's reference test.

    /usr/bin/python3 scripts/check/cav_sklearn.py IN.json OUT.json

IN.json: {"train_x": [[...]], "train_y": [±1...], "test_x": [[...]],
"test_y": [...], "alpha": a, "seeds": [...], "lr": eta0}. For each seed,
SGDClassifier with the hinge loss (the reference TCAV's classifier: learning
rate "optimal", tol 1e-3, 5 epochs without improvement, at most 1000), and
the same with the "constant" learning rate eta0 (tcav.cav.lr); once,
LogisticRegression on the same objective as SGD with the logistic loss,
mean loss + alpha/2 |w|^2, i.e. C = 1 / (n alpha), solved to tolerance.
OUT.json: per fit the unit weight vector and the held-out accuracy.
Exits 3 if scikit-learn is missing.
"""
import json
import sys

import numpy as np

try:
    from sklearn.linear_model import LogisticRegression, SGDClassifier
except ImportError as e:
    print("scikit-learn not importable: %s" % e, file=sys.stderr)
    sys.exit(3)


def summary(clf, tx, ty):
    w = clf.coef_.ravel().astype(np.float64)
    return {"w": (w / np.linalg.norm(w)).tolist(), "accuracy": float(np.mean(clf.predict(tx) == ty))}


def main():
    src, dst = sys.argv[1:3]
    d = json.load(open(src))
    x, y = np.array(d["train_x"], dtype=np.float64), np.array(d["train_y"])
    tx, ty = np.array(d["test_x"], dtype=np.float64), np.array(d["test_y"])
    alpha = d["alpha"]
    out = {"sgd_hinge": [], "sgd_hinge_constant": [], "logistic": None}
    for seed in d["seeds"]:
        clf = SGDClassifier(loss="hinge", alpha=alpha, max_iter=1000, tol=1e-3, n_iter_no_change=5,
                            learning_rate="optimal", random_state=seed)
        out["sgd_hinge"].append(summary(clf.fit(x, y), tx, ty))
        if d.get("lr"):
            clf = SGDClassifier(loss="hinge", alpha=alpha, max_iter=1000, tol=1e-3, n_iter_no_change=5,
                                learning_rate="constant", eta0=d["lr"], random_state=seed)
            out["sgd_hinge_constant"].append(summary(clf.fit(x, y), tx, ty))
    lr = LogisticRegression(C=1.0 / (len(y) * alpha), tol=1e-10, max_iter=100000)
    out["logistic"] = summary(lr.fit(x, y), tx, ty)
    json.dump(out, open(dst, "w"))


if __name__ == "__main__":
    main()

import pandas as pd
import pytest

from reports.leaderboard import rank_trials, read_leaderboard

ROWS = [
    # trial, status, params, val_acc
    (0, "complete", 7000, 99.50),
    (1, "complete", 5000, 99.42),
    (2, "complete", 3000, 99.10),
    (3, "rejected", 9000, None),
    (4, "pruned", 4000, 97.00),
    (5, "complete", 6000, 99.42),
    (6, "reused", 5000, 99.42),
    (7, "complete", 2500, 99.10),
]


def frame():
    cols = ["trial", "status", "genome", "params", "rf", "macs", "val_acc", "best_epoch", "epochs", "seconds",
            "device", "seed", "reasons", "hash"]
    return pd.DataFrame([{**dict.fromkeys(cols), "trial": t, "status": s, "params": p, "val_acc": a}
                         for t, s, p, a in ROWS], columns=cols)


def test_with_target_fewest_params_among_those_meeting_it_wins():
    df = rank_trials(frame(), target=99.4)
    ranked = df[df["rank"].notna()]
    # meets 99.4: trials 1 (5,000), 5 (6,000), 0 (7,000); then misses by accuracy, ties by fewer params: 7, 2
    assert list(ranked["trial"]) == [1, 5, 0, 7, 2]
    assert list(ranked["rank"]) == [1, 2, 3, 4, 5]
    assert df.set_index("trial").loc[1, "val_meets_target"]


def test_without_target_highest_accuracy_wins():
    ranked = rank_trials(frame(), target=None).dropna(subset=["rank"])
    assert list(ranked["trial"]) == [0, 1, 5, 7, 2]


def test_unranked_rows_are_kept():
    df = rank_trials(frame(), target=99.4)
    assert set(df.loc[df["rank"].isna(), "status"]) == {"rejected", "pruned", "reused"}
    assert len(df) == len(ROWS)


def test_read_leaderboard_errors(tmp_path):
    with pytest.raises(ValueError, match="no such leaderboard"):
        read_leaderboard(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a BudgetNAS leaderboard .missing column.s. trial, status, genome, rank"):
        read_leaderboard(bad)


def test_rows_are_only_compared_at_the_same_fidelity():
    df = frame()
    df["epochs"], df["images"] = 15, 55000
    df.loc[df["trial"] == 2, "epochs"] = 3  # a resumed study's shorter run: ranked after every 15-epoch row
    df.loc[df["trial"] == 2, "val_acc"] = 99.9
    ranked = rank_trials(df, target=99.4).dropna(subset=["rank"])
    assert list(ranked["trial"]) == [1, 5, 0, 7, 2]
    assert "images" in ranked.columns


def test_accuracies_within_one_standard_error_of_the_best_tie_and_go_to_fewer_params():
    df = frame()
    df["epochs"], df["images"] = 15, 55000
    df.loc[df["trial"] == 0, "val_acc"] = 99.34  # the most accurate, 7,000 params
    df.loc[df["trial"].isin([1, 5]), "val_acc"] = 99.30  # within 0.12 points (one SE at 5,000 images)
    df.loc[df["trial"] == 7, "val_acc"] = 99.10  # smallest, but further than one SE below the best
    df.loc[df["trial"] == 2, ["val_acc", "epochs"]] = [99.0, 3]  # another fidelity: its own best, after
    ranked = rank_trials(df, target=99.4, val_images=5000).dropna(subset=["rank"])
    assert list(ranked["trial"]) == [1, 5, 0, 7, 2]
    assert list(rank_trials(df, target=99.4).dropna(subset=["rank"])["trial"]) == [0, 1, 5, 7, 2]
    # a 200,000-image split measures to +-0.02 points: 0.04 is a real lead there
    assert list(rank_trials(df, target=99.4, val_images=200000).dropna(subset=["rank"])["trial"]) == [0, 1, 5, 7, 2]

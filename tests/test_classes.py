from fetalheart.classes import CATEGORY_IDS, CLASS_NAMES, COLORS, coco_categories, normalize_label


def test_fixed_order_and_ids():
    assert CLASS_NAMES == ("LA", "RA", "LV", "RV", "TV", "PV", "MV", "AV", "Ao", "Spine")
    assert [c["id"] for c in coco_categories()] == list(range(1, 11))
    assert CATEGORY_IDS["Spine"] == 10 and CATEGORY_IDS["LA"] == 1
    assert len(set(COLORS)) == 10


def test_aliases_case_and_spelling():
    assert normalize_label("AO") == "Ao"
    assert normalize_label("aorta") == "Ao"
    assert normalize_label(" Left_Atrium ") == "LA"
    assert normalize_label("mitral-valve") == "MV"
    assert normalize_label("av") == "AV"
    assert normalize_label("spine") == "Spine"
    assert normalize_label("liver") is None

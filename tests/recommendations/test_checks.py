"""System checks name the bad RECOMMENDATIONS value and what would be valid."""

from recommendations.checks import check_settings


def error_ids(settings, **values) -> set[str]:
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, **values}
    return {error.id for error in check_settings(None)}


def test_valid_settings_pass(settings):
    assert error_ids(settings) == set()


def test_each_bad_value_is_reported(settings):
    assert error_ids(settings, ENCODER="vgg16") == {"recommendations.E001"}
    assert error_ids(settings, ENCODER="resnet50", PRODUCT_VECTOR="median") == {"recommendations.E002"}
    assert error_ids(settings, PRODUCT_VECTOR="mean", PROFILE_STRATEGY="median") == {"recommendations.E003"}
    assert error_ids(settings, PROFILE_STRATEGY="mean", EXPLORE_MODE="bold") == {"recommendations.E004"}
    assert error_ids(settings, EXPLORE_MODE="random", EXPLORE_RATIO=1.5) == {"recommendations.E005"}


def test_bad_recipe_and_adaptation_settings_are_reported(settings):
    assert error_ids(settings, RECIPE="histogram") == {"recommendations.E008"}
    assert error_ids(settings, RECIPE="combined", RECIPE_WEIGHTS={"cnn": 1, "hue": 2}) == {
        "recommendations.E009"
    }
    assert error_ids(settings, RECIPE_WEIGHTS={"cnn": 0, "colour": 0}) == {"recommendations.E009"}
    assert error_ids(settings, RECIPE_WEIGHTS={"cnn": 1, "colour": -1}) == {"recommendations.E009"}
    assert error_ids(settings, RECIPE_WEIGHTS={"cnn": 1.0, "colour": 0.5}) == set()
    assert error_ids(settings, ADAPT_DIMENSIONS=5000) == {"recommendations.E010"}
    assert error_ids(settings, ADAPT_DIMENSIONS=256, ADAPT_EPOCHS=0) == {"recommendations.E010"}
    assert error_ids(settings, ADAPT_EPOCHS=6, ADAPT_VALIDATION_SHARE=1.0) == {"recommendations.E011"}


def test_message_lists_the_known_encoders(settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "ENCODER": "vgg16"}
    (error,) = check_settings(None)
    assert "efficientnet_lite0" in error.msg and "'vgg16'" in error.msg

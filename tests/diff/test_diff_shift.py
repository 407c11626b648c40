"""Differential tests (pysev vs unicorn), group "shift": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("shift"), ids=lambda f: f.id)
def test_shift(form):
    check_form(form)

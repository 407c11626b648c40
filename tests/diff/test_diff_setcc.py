"""Differential tests (pysev vs unicorn), group "setcc": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("setcc"), ids=lambda f: f.id)
def test_setcc(form):
    check_form(form)

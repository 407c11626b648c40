"""Differential tests (pysev vs unicorn), group "unary": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("unary"), ids=lambda f: f.id)
def test_unary(form):
    check_form(form)

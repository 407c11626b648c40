"""Differential tests (pysev vs unicorn), group "lea": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("lea"), ids=lambda f: f.id)
def test_lea(form):
    check_form(form)

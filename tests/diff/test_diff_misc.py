"""Differential tests (pysev vs unicorn), group "misc": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("misc"), ids=lambda f: f.id)
def test_misc(form):
    check_form(form)

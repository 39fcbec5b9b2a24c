"""Write sentences.jsonl: medical entity-recognition examples (Disease, Drug, Symptom; IOB2 tags)
generated from our own clinical-note and patient-leaflet templates and our own term lists, seeded
with random.Random(0) so a rerun gives the same file. Near duplicates are dropped with domaintune's
own cleaning check (NearDuplicateIndex), the one `prepare` and `train` use.

Run: cd /work/main && .venv/bin/python plugins/medical/data/make_sentences.py
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from itertools import combinations
from pathlib import Path

from domaintune.data.cleaning import NearDuplicateIndex, near_duplicates, words

OUT = Path(__file__).with_name("sentences.jsonl")
TARGET, TARGET_EMPTY = 400, 40  # sentences kept, of which with no entity
CAP, CAP_LONG = 10, 4  # at most this many kept sentences per template (long ones: per long template)
TYPES = ("Disease", "Drug", "Symptom")

# Tokens like CoNLL: decimals, words (hyphenated and slash-joined kept whole: "co-amoxiclav",
# "132/84"), "'s" split off, every other punctuation mark its own token.
TOKEN = re.compile(r"\d+(?:\.\d+)+|'s\b|\w+(?:[-/]\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text)


# Drugs: name -> doses written the way a note would.
DOSES = {
    "metformin": ["500 mg", "850 mg", "1 g"],
    "salbutamol": ["100 micrograms", "two puffs"],
    "amoxicillin": ["500 mg", "1 g"],
    "atorvastatin": ["20 mg", "40 mg", "80 mg"],
    "lisinopril": ["5 mg", "10 mg", "20 mg"],
    "amlodipine": ["5 mg", "10 mg"],
    "omeprazole": ["20 mg", "40 mg"],
    "lansoprazole": ["15 mg", "30 mg"],
    "levothyroxine": ["25 micrograms", "50 micrograms", "100 micrograms"],
    "warfarin": ["3 mg", "5 mg"],
    "apixaban": ["2.5 mg", "5 mg"],
    "rivaroxaban": ["15 mg", "20 mg"],
    "clopidogrel": ["75 mg"],
    "ibuprofen": ["200 mg", "400 mg"],
    "naproxen": ["250 mg", "500 mg"],
    "paracetamol": ["500 mg", "1 g"],
    "co-codamol": ["30/500 mg", "8/500 mg"],
    "sumatriptan": ["50 mg", "100 mg"],
    "prednisolone": ["5 mg", "30 mg", "40 mg"],
    "methotrexate": ["7.5 mg", "15 mg"],
    "hydroxychloroquine": ["200 mg"],
    "sertraline": ["50 mg", "100 mg"],
    "citalopram": ["10 mg", "20 mg"],
    "fluoxetine": ["20 mg"],
    "gabapentin": ["300 mg", "600 mg"],
    "insulin glargine": ["10 units", "18 units", "24 units"],
    "empagliflozin": ["10 mg", "25 mg"],
    "bisoprolol": ["1.25 mg", "2.5 mg", "5 mg"],
    "furosemide": ["20 mg", "40 mg"],
    "ramipril": ["2.5 mg", "5 mg", "10 mg"],
    "glyceryl trinitrate": ["400 micrograms"],
    "doxycycline": ["100 mg", "200 mg"],
    "nitrofurantoin": ["50 mg", "100 mg"],
    "co-amoxiclav": ["625 mg"],
    "flucloxacillin": ["500 mg", "1 g"],
    "clarithromycin": ["250 mg", "500 mg"],
    "phenoxymethylpenicillin": ["250 mg", "500 mg"],
    "aciclovir": ["400 mg", "800 mg"],
    "budesonide": ["200 micrograms", "400 micrograms"],
    "tiotropium": ["2.5 micrograms", "18 micrograms"],
    "montelukast": ["4 mg", "10 mg"],
    "allopurinol": ["100 mg", "300 mg"],
    "colchicine": ["500 micrograms"],
    "levetiracetam": ["250 mg", "500 mg"],
    "sodium valproate": ["200 mg", "500 mg"],
    "ferrous sulfate": ["200 mg"],
    "alendronic acid": ["70 mg"],
    "co-careldopa": ["62.5 mg", "125 mg"],
    "mesalazine": ["400 mg", "800 mg"],
    "mebeverine": ["135 mg"],
    "ondansetron": ["4 mg", "8 mg"],
    "hydrocortisone": ["1 % cream"],
    "calcipotriol": ["ointment"],
    "dimethyl fumarate": ["120 mg", "240 mg"],
    "hydroxycarbamide": ["500 mg"],
}
FREQS = ["once daily", "twice daily", "three times a day", "at night", "every morning", "four times a day"]
FREQ_OVERRIDE = {
    "methotrexate": ["once weekly"],
    "alendronic acid": ["once weekly"],
    "salbutamol": ["as needed", "up to four times a day"],
    "glyceryl trinitrate": ["as needed"],
    "sumatriptan": ["at the start of an attack"],
    "paracetamol": ["up to four times a day", "as needed"],
    "co-codamol": ["up to four times a day", "as needed"],
    "ondansetron": ["as needed", "twice daily"],
}

# Diseases: (name and its usual short form, drugs that treat it, symptoms it causes).
DISEASES = [
    (
        ["type 2 diabetes", "T2DM"],
        ["metformin", "empagliflozin", "insulin glargine"],
        ["excessive thirst", "frequent urination", "fatigue", "blurred vision"],
    ),
    (["type 1 diabetes"], ["insulin glargine"], ["excessive thirst", "weight loss", "frequent urination", "fatigue"]),
    (
        ["asthma"],
        ["salbutamol", "budesonide", "montelukast"],
        ["wheeze", "shortness of breath", "night-time cough", "chest tightness"],
    ),
    (
        ["migraine"],
        ["sumatriptan", "ibuprofen", "paracetamol"],
        ["headache", "nausea", "sensitivity to light", "visual aura"],
    ),
    (
        ["community-acquired pneumonia"],
        ["amoxicillin", "clarithromycin", "doxycycline"],
        ["fever", "productive cough", "shortness of breath", "pleuritic chest pain"],
    ),
    (
        ["rheumatoid arthritis"],
        ["methotrexate", "hydroxychloroquine", "prednisolone"],
        ["joint pain", "morning stiffness", "swollen joints", "fatigue"],
    ),
    (["hypertension", "high blood pressure"], ["amlodipine", "ramipril", "lisinopril"], ["headache", "dizziness"]),
    (
        ["chronic obstructive pulmonary disease", "COPD"],
        ["tiotropium", "salbutamol", "prednisolone"],
        ["shortness of breath", "productive cough", "wheeze"],
    ),
    (
        ["atrial fibrillation", "AF"],
        ["apixaban", "bisoprolol", "rivaroxaban", "warfarin"],
        ["palpitations", "dizziness", "shortness of breath"],
    ),
    (
        ["heart failure"],
        ["furosemide", "bisoprolol", "ramipril", "empagliflozin"],
        ["swollen ankles", "shortness of breath", "fatigue", "orthopnoea"],
    ),
    (
        ["chronic kidney disease", "CKD"],
        ["ramipril", "empagliflozin"],
        ["fatigue", "itching", "swollen ankles", "loss of appetite"],
    ),
    (
        ["hypothyroidism", "underactive thyroid"],
        ["levothyroxine"],
        ["fatigue", "weight gain", "feeling cold", "constipation"],
    ),
    (["gout"], ["colchicine", "allopurinol", "naproxen"], ["joint pain", "swollen joints", "red skin over the joint"]),
    (["osteoarthritis"], ["paracetamol", "naproxen", "ibuprofen"], ["joint pain", "joint stiffness"]),
    (["psoriasis"], ["calcipotriol", "methotrexate"], ["itching", "scaly skin patches"]),
    (["eczema", "atopic dermatitis"], ["hydrocortisone"], ["itching", "dry skin", "rash"]),
    (["Crohn's disease"], ["prednisolone", "methotrexate"], ["abdominal pain", "diarrhoea", "weight loss"]),
    (["ulcerative colitis"], ["mesalazine", "prednisolone"], ["bloody diarrhoea", "abdominal pain", "bowel urgency"]),
    (
        ["urinary tract infection", "UTI"],
        ["nitrofurantoin"],
        ["painful urination", "frequent urination", "lower abdominal pain"],
    ),
    (["deep vein thrombosis", "DVT"], ["apixaban", "rivaroxaban"], ["calf pain", "leg swelling"]),
    (
        ["pulmonary embolism"],
        ["apixaban", "rivaroxaban"],
        ["pleuritic chest pain", "shortness of breath", "coughing up blood"],
    ),
    (
        ["major depressive disorder", "depression"],
        ["sertraline", "citalopram", "fluoxetine"],
        ["low mood", "insomnia", "loss of appetite", "fatigue"],
    ),
    (["generalised anxiety disorder"], ["sertraline", "citalopram"], ["palpitations", "insomnia", "restlessness"]),
    (["epilepsy"], ["levetiracetam", "sodium valproate"], ["seizures", "confusion"]),
    (["Parkinson's disease"], ["co-careldopa"], ["tremor", "muscle stiffness", "slow movements"]),
    (["iron deficiency anaemia"], ["ferrous sulfate"], ["fatigue", "shortness of breath", "pale skin"]),
    (
        ["gastro-oesophageal reflux disease", "GORD"],
        ["omeprazole", "lansoprazole"],
        ["heartburn", "acid regurgitation", "chest pain"],
    ),
    (["irritable bowel syndrome", "IBS"], ["mebeverine"], ["bloating", "abdominal pain", "diarrhoea", "constipation"]),
    (
        ["coronary artery disease"],
        ["atorvastatin", "clopidogrel", "glyceryl trinitrate", "bisoprolol"],
        ["chest pain", "shortness of breath"],
    ),
    (["stable angina"], ["glyceryl trinitrate", "bisoprolol", "amlodipine"], ["chest pain", "chest tightness"]),
    (["cellulitis"], ["flucloxacillin", "doxycycline", "clarithromycin"], ["red swollen skin", "fever", "leg pain"]),
    (["shingles"], ["aciclovir", "paracetamol"], ["painful rash", "burning pain"]),
    (["tonsillitis"], ["phenoxymethylpenicillin", "paracetamol"], ["sore throat", "fever", "difficulty swallowing"]),
    (["acute otitis media"], ["amoxicillin", "paracetamol"], ["ear pain", "fever"]),
    (["peptic ulcer disease"], ["omeprazole", "lansoprazole"], ["upper abdominal pain", "nausea", "black stools"]),
    (["osteoporosis"], ["alendronic acid"], ["back pain"]),
    (["multiple sclerosis"], ["dimethyl fumarate"], ["numbness", "blurred vision", "fatigue"]),
    (["sickle cell disease"], ["hydroxycarbamide", "co-codamol"], ["bone pain", "fatigue"]),
    (["hyperlipidaemia", "high cholesterol"], ["atorvastatin"], []),
    (["polymyalgia rheumatica"], ["prednisolone"], ["shoulder pain", "morning stiffness"]),
    (["sepsis"], ["co-amoxiclav"], ["fever", "confusion", "chills"]),
    (["diabetic neuropathy"], ["gabapentin"], ["burning pain", "numbness in the feet", "tingling"]),
    (["viral gastroenteritis"], ["ondansetron"], ["vomiting", "diarrhoea", "abdominal cramps"]),
    (["lower respiratory tract infection"], ["amoxicillin", "doxycycline"], ["productive cough", "fever"]),
]
# Side effects a leaflet would list, by drug; others get DEFAULT_EFFECTS.
SIDE_EFFECTS = {
    "metformin": ["nausea", "diarrhoea", "abdominal pain", "metallic taste"],
    "amlodipine": ["swollen ankles", "flushing", "headache"],
    "ramipril": ["dry cough", "dizziness"],
    "lisinopril": ["dry cough", "dizziness"],
    "atorvastatin": ["muscle aches", "headache"],
    "bisoprolol": ["cold hands", "fatigue", "dizziness"],
    "furosemide": ["dizziness", "frequent urination"],
    "sertraline": ["nausea", "insomnia", "headache"],
    "citalopram": ["nausea", "insomnia", "sweating"],
    "fluoxetine": ["nausea", "insomnia", "headache"],
    "gabapentin": ["drowsiness", "dizziness", "weight gain"],
    "prednisolone": ["insomnia", "increased appetite", "mood changes"],
    "methotrexate": ["nausea", "mouth ulcers", "fatigue"],
    "sumatriptan": ["tingling", "flushing", "chest tightness"],
    "salbutamol": ["tremor", "palpitations", "headache"],
    "amoxicillin": ["diarrhoea", "nausea", "rash"],
    "co-amoxiclav": ["diarrhoea", "nausea", "rash"],
    "flucloxacillin": ["diarrhoea", "nausea", "rash"],
    "clarithromycin": ["diarrhoea", "metallic taste", "nausea"],
    "doxycycline": ["nausea", "heartburn", "sensitivity to sunlight"],
    "ibuprofen": ["indigestion", "heartburn", "nausea"],
    "naproxen": ["indigestion", "heartburn", "headache"],
    "apixaban": ["bruising", "nosebleeds", "bleeding gums"],
    "rivaroxaban": ["bruising", "nosebleeds", "bleeding gums"],
    "warfarin": ["bruising", "nosebleeds", "bleeding gums"],
    "clopidogrel": ["bruising", "nosebleeds", "diarrhoea"],
    "co-codamol": ["constipation", "drowsiness", "nausea"],
    "ferrous sulfate": ["constipation", "black stools", "stomach upset"],
    "levetiracetam": ["drowsiness", "irritability", "headache"],
    "colchicine": ["diarrhoea", "nausea", "vomiting"],
    "empagliflozin": ["frequent urination", "dizziness", "excessive thirst"],
    "glyceryl trinitrate": ["headache", "flushing", "dizziness"],
    "ondansetron": ["constipation", "headache", "flushing"],
    "allopurinol": ["rash", "nausea", "drowsiness"],
    "levothyroxine": ["palpitations", "insomnia", "sweating"],
    "sodium valproate": ["weight gain", "tremor", "hair loss"],
    "co-careldopa": ["nausea", "dizziness", "drowsiness"],
}
DEFAULT_EFFECTS = ["nausea", "headache", "dizziness", "diarrhoea", "rash"]
ALLERGY = ["rash", "hives", "itching", "facial swelling", "wheeze", "swollen lips"]
OTHER_SYMPTOMS = ["chest pain", "cough", "sore throat", "earache", "night sweats", "constipation", "back pain"]

DRUGS = list(DOSES)
SYMPTOMS = sorted(
    {s for _, _, ss in DISEASES for s in ss}
    | {s for ss in SIDE_EFFECTS.values() for s in ss}
    | set(DEFAULT_EFFECTS)
    | set(ALLERGY)
    | set(OTHER_SYMPTOMS)
)

# Words around the entities (tagged O); none of them contains a disease, drug or symptom.
FILLERS = {
    "who": [
        "The patient",
        "She",
        "He",
        "Mrs Patel",
        "Mr Okafor",
        "Ms Lindqvist",
        "Mr Hughes",
        "Mrs Adeyemi",
        "Our patient",
        "This gentleman",
        "This lady",
        "Mr Dunne",
        "Miss Kowalski",
        "The resident",
    ],
    "dur": [
        "two days",
        "three days",
        "a week",
        "ten days",
        "two weeks",
        "a month",
        "six weeks",
        "three months",
        "a year",
        "48 hours",
        "four days",
        "five weeks",
        "eight months",
    ],
    "when": [
        "yesterday",
        "this morning",
        "last night",
        "two weeks ago",
        "on Monday",
        "at the last visit",
        "earlier today",
        "over the weekend",
        "last spring",
        "in 2019",
        "three years ago",
        "on Friday",
    ],
    "place": [
        "the emergency department",
        "the GP surgery",
        "the respiratory clinic",
        "the medical assessment unit",
        "the acute medical unit",
        "out-of-hours services",
        "the walk-in centre",
        "the rheumatology clinic",
    ],
    "clinician": [
        "the GP",
        "the practice nurse",
        "the pharmacist",
        "the consultant",
        "the diabetes nurse",
        "the on-call registrar",
        "the community matron",
        "the specialist nurse",
        "the district nurse",
    ],
    "sev": ["mild", "moderate", "severe", "worsening", "intermittent", "persistent", "new"],
    "timing": [
        "at night",
        "in the morning",
        "on exertion",
        "after meals",
        "when lying flat",
        "in cold weather",
        "towards the evening",
        "after standing for a while",
    ],
    "exam": [
        "alert and orientated",
        "chest clear on auscultation",
        "abdomen soft and non-tender",
        "heart sounds normal",
        "no focal neurology",
        "calves soft and non-tender",
        "well perfused",
        "mucous membranes moist",
        "afebrile and comfortable at rest",
        "pulse regular",
    ],
    "test": [
        "chest X-ray",
        "ECG",
        "urine dip",
        "full blood count",
        "HbA1c",
        "renal function",
        "liver function tests",
        "spirometry",
        "thyroid function tests",
        "lipid profile",
        "CRP",
        "blood cultures",
        "peak flow",
    ],
    "result": [
        "a raised CRP",
        "a low haemoglobin",
        "a raised TSH",
        "a raised urate",
        "a high HbA1c",
        "a raised white cell count",
        "a reduced eGFR",
        "a raised D-dimer",
    ],
    "year": ["2009", "2012", "2014", "2016", "2018", "2020", "2021", "2023"],
    "advice": ["call 111", "contact your GP", "call 999", "speak to a pharmacist", "seek urgent advice"],
    "age": [str(a) for a in range(19, 90, 3)],
    "aged": [f"{a}-year-old" for a in range(19, 90, 3)],
    "bp": ["118/76", "124/80", "132/84", "138/88", "145/92", "151/95", "160/98", "110/70"],
    "hr": [str(h) for h in range(58, 125, 6)],
    "rr": [str(r) for r in range(12, 30, 2)],
    "temp": ["36.4", "36.8", "37.1", "37.6", "38.2", "38.9", "39.4"],
    "sat": [str(s) for s in range(89, 100)],
    "weight": [str(w) for w in range(48, 121, 7)],
    "height": [str(h) for h in range(150, 196, 5)],
    "bmi": ["19.8", "22.4", "24.9", "27.3", "30.1", "33.6", "36.2"],
    "units": [str(u) for u in (0, 2, 4, 6, 10, 14, 20, 28)],
    "packyears": [str(p) for p in (5, 10, 15, 20, 30, 40)],
    "store": ["25", "30"],
    "living": [
        "alone",
        "with her husband",
        "with his daughter",
        "in a care home",
        "with a partner and two children",
        "in sheltered housing",
        "with his wife",
        "with a carer who visits twice a day",
    ],
    "adl": [
        "washing and dressing",
        "all daily activities",
        "shopping and cooking",
        "personal care",
        "stairs with one rail",
    ],
    "appt": ["every appointment", "your next review", "the pre-assessment clinic", "hospital", "the pharmacy"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
    "procedure": ["blood tests", "a chest X-ray", "photographs of the skin", "a home visit", "a joint injection"],
    "leaflet_timing": [
        "with or without food",
        "preferably in the morning",
        "at the same time each day",
        "after a meal",
        "before breakfast",
    ],
    "household": ["her daughter", "his son", "a neighbour", "her partner", "a friend", "his wife"],
    "walk": ["100 metres", "to the shops", "around the house", "half a mile", "with a stick"],
}

# Clinical notes and patient leaflets. {disease}, {drug}, {symptom}: entities (a number makes a
# second, distinct one; the same name twice is the same entity); {effect}: a side effect of the
# sentence's first drug, {allergy}: an allergic reaction (both Symptom); {doseN}, {freqN}: a dose
# and frequency of {drugN}; any other name: words from FILLERS.
TEMPLATES = [
    "{who} was diagnosed with {disease} {when} .",
    "{who} reports {dur} of {symptom} and {symptom2} .",
    "Started {drug} {dose} {freq} for {disease} .",
    "Continue {drug} {dose} {freq} .",
    "Known {disease} , well controlled on {drug} .",
    "Presented with {sev} {symptom} , {symptom2} and {symptom3} over the past {dur} .",
    "PMH : {disease} , {disease2} , {disease3} .",
    "Denies {symptom} , {symptom2} or {symptom3} .",
    "Diagnosis : {disease} . Plan : {drug} {dose} {freq} for {dur} .",
    "{drug} was stopped {when} because of {effect} .",
    "Switched from {drug} to {drug2} after {dur} of {effect} .",
    "Reviewed by {clinician} {when} ; {disease} remains stable and {drug} is unchanged .",
    "No {symptom} or {symptom2} since starting {drug} {dur} ago .",
    "Admitted with {disease} and treated with {drug} and {drug2} .",
    "On examination : {exam} , {exam2} . Impression : {disease} .",
    "{symptom} improved after {dur} of {drug} .",
    "Safety-netting advice given : return if {symptom} or {symptom2} develops {timing} .",
    "Bloods show {result} ; {disease} is on the differential , {test} to follow .",
    "Differential includes {disease} and {disease2} ; {test} requested .",
    "{who} has had {disease} for {dur} and uses {drug} {freq} .",
    "Increase {drug} to {dose} and add {drug2} if {symptom} persists beyond {dur} .",
    "Complains of {symptom} , worse {timing} , with no {symptom2} .",
    "Family history of {disease} and {disease2} on the maternal side .",
    "Allergic to {drug} ( {allergy} and {allergy2} ) .",
    "{disease} flare with {symptom} ; {dur} course of {drug} given .",
    "Declined {drug} for {disease} {when} and prefers to try lifestyle changes first .",
    "Telephone consultation : {symptom} for {dur} , no {symptom2} , advised {drug} {freq} .",
    "Child brought in by mother with {symptom} , {symptom2} and {symptom3} ; diagnosed with {disease} .",
    "Ongoing {symptom} {timing} despite {drug} ; consider {disease} .",
    "Referred to {place} {when} with suspected {disease} .",
    "{disease} , on {drug} .",
    "Ask about {symptom} {timing} at each review .",
    "The patient denies {symptom} .",
    "Meds : {drug} {dose} {freq} , {drug2} {dose2} {freq2} .",
    "{disease} ( diagnosed {year} ) , {disease2} ( diagnosed {year2} ) .",
    "Temperature {temp} , {symptom} and {symptom2} for {dur} ; treat as {disease} with {drug} .",
    "{who} stopped {drug} {when} and the {effect} has settled .",
    "{drug} ( {dose} {freq} ) was prescribed for {disease} by {clinician} .",
    "{drug} is used to treat {disease} .",
    "{drug} is used to treat {disease} and {disease2} in adults and children over 12 .",
    "Do not take {drug} if you are already taking {drug2} , unless {clinician} has told you to .",
    "Common side effects of {drug} include {effect} , {effect2} and {effect3} .",
    "Tell your doctor straight away if you get {symptom} {timing} while taking {drug} .",
    "If you have {disease} , your doctor may prescribe {drug} .",
    "{symptom} is one of the most common signs of {disease} .",
    "People with {disease} often notice {symptom} and {symptom2} , especially {timing} .",
    "Take {drug} {leaflet_timing} to reduce the chance of {effect} .",
    "Keep taking {drug} even when you feel well , because {disease} can come back .",
    "You may need {test} before starting {drug} and again after {dur} .",
    "Ask your pharmacist before taking {drug} or {drug2} with this medicine .",
    "If you miss a dose of {drug} , take it as soon as you remember , unless it is nearly time for the next one .",
    "See a doctor urgently if {symptom} , {symptom2} or {symptom3} start suddenly .",
    "{disease} is a long-term condition that can cause {symptom} and {symptom2} .",
    "Children with {disease} may have {symptom} rather than {symptom2} .",
    "{drug} and {drug2} should not be taken together .",
    "Stop taking {drug} and {advice} if you develop {allergy} or {allergy2} .",
    "Living with {disease} : managing {symptom} and {symptom2} at home .",
    "Symptoms of {disease} can include {symptom} , {symptom2} , {symptom3} and {symptom4} .",
    "Reduce {drug} gradually over {dur} ; stopping suddenly can bring back {symptom} .",
    "Mild {disease} can often be managed without {drug} .",
    "How long does {effect} last after starting {drug} ?",
    "What is the difference between {disease} and {disease2} ?",
    "Can I drink alcohol while taking {drug} for {disease} ?",
    "{who} , {age} , presents with {symptom} and {symptom2} ; {test} shows {result} .",
]
# Middle length: 25 to 40 tokens.
MEDIUM_TEMPLATES = [
    "{who} was reviewed {when} for {disease} ; {symptom} has improved since {drug} was increased to {dose} {freq} , "
    "but {symptom2} continues {timing} , so {test} has been requested .",
    "If you have {disease} or {disease2} , or you have ever had {effect} with another medicine , talk to your doctor "
    "or pharmacist before taking {drug} , as you may need a lower dose .",
    "Most people with {disease} feel better within {dur} of starting {drug} , but you should {advice} if {symptom} , "
    "{symptom2} or {symptom3} get worse or do not improve .",
    "Telephone follow-up {when} : {symptom} settling after {dur} of {drug} , still some {symptom2} {timing} , no "
    "{symptom3} ; continue and rebook with {clinician} if not resolved in {dur2} .",
    "{who} , a {aged} with {disease} and {disease2} , attended {place} {when} after {dur} of {symptom} and was sent "
    "home on {drug} {dose} {freq} with advice to avoid {drug3} .",
    "Your medicine contains {drug} , one of a group of medicines used for {disease} ; it can ease {symptom} and "
    "{symptom2} , although it may take {dur} before you notice the full effect .",
    "Problem list : {disease} ( on {drug} ) , {disease2} ( on {drug2} ) , {disease3} ( stable ) and previous "
    "{disease4} , now resolved .",
    "Seen with {household} {when} ; {sev} {symptom} for {dur} with {symptom2} but no {symptom3} , {exam} , so "
    "{disease} is unlikely and no {drug} is needed for now .",
]
# History sentences and long leaflet paragraphs: 60 to 90 tokens, so long sentences get windowed.
LONG_TEMPLATES = [
    "{who} is a {aged} with a background of {disease} , {disease2} , {disease3} and {disease4} , currently taking "
    "{drug} {dose} {freq} , {drug2} {dose2} {freq2} and {drug3} , who presented to {place} {when} with {dur} of "
    "{symptom} , {symptom2} and {symptom3} ; {drug4} was started and {test} requested .",
    "Before you start {drug} , tell your doctor if you have ever had {disease} , {disease2} , {disease3} or "
    "{disease4} , if you are pregnant or breastfeeding , or if you take other medicines such as {drug2} , {drug3} "
    "or {drug4} , because these can change how well {drug} works and may make side effects such as {effect} , "
    "{effect2} or {effect3} more likely ; your doctor may then choose a lower starting dose .",
    "Discharge summary : {who} was admitted {when} with {disease} complicated by {disease2} , presenting with "
    "{symptom} , {symptom2} , {symptom3} and {symptom4} ; treated with {drug} , {drug2} and {drug3} with steady "
    "improvement , and discharged on {drug4} {dose4} {freq4} with advice to return if {symptom5} or {symptom6} "
    "recur , plus follow-up with {clinician} in {dur} and {test} in {dur2} .",
    "History : {dur} of {symptom} and {symptom2} , first treated by {clinician} with {drug} , then {drug2} when "
    "there was no improvement ; past history includes {disease} , {disease2} and {disease3} ; regular medicines "
    "are {drug3} {dose3} {freq3} and {drug4} {dose4} {freq4} ; no known drug allergies ; non-smoker ; "
    "examination showed {exam} ; working diagnosis is {disease4} .",
]
# No entity: observations, social history, leaflet boilerplate.
EMPTY_TEMPLATES = [
    "Observations : temperature {temp} , pulse {hr} , blood pressure {bp} , oxygen saturation {sat} % on room air .",
    "Follow-up with {clinician} in {dur} to review the {test} results .",
    "{who} lives {living} and is independent with {adl} .",
    "Please bring a list of your current medicines to {appt} .",
    "Store this medicine below {store} degrees and keep it out of the sight and reach of children .",
    "{test} requested {when} ; results to be chased by {clinician} on {day} .",
    "Smoking history : {packyears} pack years , stopped {dur} ago ; alcohol {units} units per week .",
    "Seen in {place} {when} ; {exam} ; plan discussed with {household} .",
    "Weight {weight} kg , height {height} cm , BMI {bmi} .",
    "{who} attended with {household} , and consent was obtained for {procedure} .",
    "Next review in {dur} with {clinician} , sooner if concerned .",
    "Swallow the tablets whole with a glass of water , {leaflet_timing} .",
    "Heart rate {hr} , respiratory rate {rr} , blood pressure {bp} , temperature {temp} .",
    "Letter copied to {clinician} and {clinician2} {when} .",
    "{test} and {test2} were normal {when} .",
    "{who} walks {walk} and manages {adl} without help from {household} .",
    "Medication reviewed with {clinician} {when} ; no changes made .",
    "Patient information leaflet given and questions answered by {clinician} .",
]
SLOT = re.compile(r"\{([a-z_]+?)(\d*)\}")


def template_slots(template: str) -> list[tuple[str, str]]:
    slots = []
    for kind, number in SLOT.findall(template):
        if (kind, number) not in slots:
            slots.append((kind, number))
    return slots


def pick(rng: random.Random, preferred: list[str], everything: list[str], used: set[str], p: float) -> str:
    """A value not in `used`: from `preferred` with probability `p` (when any is left), else any."""
    left = [v for v in preferred if v not in used]
    if not left or rng.random() >= p:
        left = [v for v in everything if v not in used]
    value = rng.choice(left)
    used.add(value)
    return value


def fill(template: str, rng: random.Random) -> tuple[list[str], list[str]]:
    """Tokens and IOB2 tags of one sentence from `template`; drugs and symptoms mostly fit the diseases."""
    slots = template_slots(template)
    values: dict[tuple[str, str], tuple[str, str | None]] = {}  # slot -> (text, entity type or None)
    disease_slots = [s for s in slots if s[0] == "disease"]
    chosen: list[tuple] = []
    for _ in disease_slots:  # later diseases mostly related to the first (they share a drug)
        related = [e for e in DISEASES if e not in chosen and chosen and set(e[1]) & set(chosen[0][1])]
        unrelated = [e for e in DISEASES if e not in chosen]
        chosen.append(rng.choice(related if related and rng.random() < 0.6 else unrelated))
    for slot, (names, _, _) in zip(disease_slots, chosen):
        values[slot] = (names[0] if len(names) == 1 or rng.random() < 0.7 else names[1], "Disease")
    fitting_drugs = list(dict.fromkeys(d for _, ds, _ in chosen for d in ds))
    drug_slots = [s for s in slots if s[0] == "drug"]
    common = [d for d in fitting_drugs if all(d in ds for _, ds, _ in chosen)]
    used_drugs: set[str] = set()
    drug_of: dict[str, str] = {}
    for slot in drug_slots:
        # {drugN} treats {diseaseN} (a lone drug: all the diseases, where one does), else one of the
        # sentence's diseases; with no disease, drugs after the first treat what the first treats
        own = [entry[1] for s, entry in zip(disease_slots, chosen) if s[1] == slot[1]]
        if len(drug_slots) == 1 and len(chosen) > 1 and common:
            fitting = common
        elif own or chosen:
            fitting = own[0] if own else fitting_drugs
        else:
            fitting = [d for _, ds, _ in DISEASES if set(ds) & used_drugs for d in ds]
        drug_of[slot[1]] = pick(rng, fitting, DRUGS, used_drugs, 0.85)
        values[slot] = (drug_of[slot[1]], "Drug")
    treated = chosen or [e for e in DISEASES if set(e[1]) & used_drugs]
    fitting_symptoms = list(dict.fromkeys(s for _, _, ss in treated for s in ss))
    first_drug = drug_of[min(drug_of)] if drug_of else None
    effects = SIDE_EFFECTS.get(first_drug, DEFAULT_EFFECTS) + DEFAULT_EFFECTS
    used_symptoms: set[str] = set()
    for slot in slots:
        kind, number = slot
        if kind == "symptom":
            values[slot] = (pick(rng, fitting_symptoms, SYMPTOMS, used_symptoms, 0.9), "Symptom")
        elif kind == "effect":
            values[slot] = (pick(rng, list(dict.fromkeys(effects)), SYMPTOMS, used_symptoms, 0.95), "Symptom")
        elif kind == "allergy":
            values[slot] = (pick(rng, ALLERGY, SYMPTOMS, used_symptoms, 1.0), "Symptom")
        elif kind == "dose":
            values[slot] = (rng.choice(DOSES[drug_of[number]]), None)
        elif kind == "freq":
            values[slot] = (rng.choice(FREQ_OVERRIDE.get(drug_of[number], FREQS)), None)
        elif kind not in ("disease", "drug"):
            taken = {v for (k, _), (v, _) in values.items() if k == kind}
            values[slot] = (rng.choice([v for v in FILLERS[kind] if v not in taken]), None)
    tokens, tags = [], []
    position = 0
    for match in SLOT.finditer(template):
        literal = tokenize(template[position : match.start()])
        tokens += literal
        tags += ["O"] * len(literal)
        text, kind = values[(match.group(1), match.group(2))]
        piece = tokenize(text)
        tokens += piece
        tags += ["O"] * len(piece) if kind is None else [f"B-{kind}"] + [f"I-{kind}"] * (len(piece) - 1)
        position = match.end()
    literal = tokenize(template[position:])
    tokens += literal
    tags += ["O"] * len(literal)
    if tokens[0][0].islower():
        tokens[0] = tokens[0][0].upper() + tokens[0][1:]
    return tokens, tags


def entities(tags: list[str]) -> list[str]:
    return [t[2:] for t in tags if t.startswith("B-")]


def legal_iob2(tags: list[str]) -> bool:
    previous = "O"
    for tag in tags:
        if tag != "O" and (tag[:2] not in ("B-", "I-") or tag[2:] not in TYPES):
            return False
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True


def generate() -> list[dict]:
    rng = random.Random(0)
    index = NearDuplicateIndex()
    capped = [(t, CAP) for t in TEMPLATES + MEDIUM_TEMPLATES] + [(t, CAP_LONG) for t in LONG_TEMPLATES]
    groups = {
        "entities": (capped, TARGET - TARGET_EMPTY),
        "empty": ([(t, CAP) for t in EMPTY_TEMPLATES], TARGET_EMPTY),
    }
    kept: dict[str, list[dict]] = {name: [] for name in groups}
    per_template: Counter = Counter()
    order, skipped = [], 0
    for _ in range(200_000):
        open_groups = [g for g, (_, target) in groups.items() if len(kept[g]) < target]
        if not open_groups:
            break
        group = "empty" if "empty" in open_groups and (len(open_groups) == 1 or rng.random() < 0.1) else "entities"
        choices = [t for t, cap in groups[group][0] if per_template[t] < cap]
        if not choices:
            raise SystemExit(f"templates of {group} exhausted at {len(kept[group])} sentences")
        template = rng.choice(choices)
        tokens, tags = fill(template, rng)
        text = words(" ".join(tokens))
        signature = NearDuplicateIndex.signatures([text])[0]
        if index.find(text, signature):
            skipped += 1
            continue
        index.add(text, signature)
        per_template[template] += 1
        row = {"tokens": tokens, "tags": tags}
        kept[group].append(row)
        order.append(row)
    else:
        raise SystemExit("gave up before reaching the target")
    print(f"near duplicates skipped: {skipped}")
    everything = TEMPLATES + MEDIUM_TEMPLATES + LONG_TEMPLATES + EMPTY_TEMPLATES
    print(f"templates used: {len(per_template)} of {len(everything)}")
    return order


def check(rows: list[dict]) -> None:
    for row in rows:
        assert len(row["tokens"]) == len(row["tags"]), row
        assert legal_iob2(row["tags"]), row
    types_of: dict[str, set] = {}
    for row in rows:
        start = None
        for i, tag in enumerate(row["tags"] + ["O"]):
            if start is not None and not tag.startswith("I-"):
                span = " ".join(row["tokens"][start:i]).lower()
                types_of.setdefault(span, set()).add(row["tags"][start][2:])
                start = None
            if tag.startswith("B-"):
                start = i
    clashes = {span: types for span, types in types_of.items() if len(types) > 1}
    assert not clashes, clashes
    texts = [words(" ".join(row["tokens"])) for row in rows]
    pairs = [(i, j) for i, j in combinations(range(len(texts)), 2) if near_duplicates(texts[i], texts[j])]
    assert not pairs, pairs[:5]


def main() -> None:
    print(f"lists: {len(DISEASES)} diseases, {len(DRUGS)} drugs, {len(SYMPTOMS)} symptoms")
    rows = generate()
    check(rows)
    with OUT.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    per_type = Counter(t for row in rows for t in entities(row["tags"]))
    per_sentence = Counter(min(len(entities(row["tags"])), 4) for row in rows)
    lengths = [len(row["tokens"]) for row in rows]
    print(f"sentences: {len(rows)}")
    print("entities per type: " + ", ".join(f"{t} {per_type[t]}" for t in TYPES))
    print(f"sentences with 0 entities: {per_sentence[0]}")
    print("sentences by entity count: " + ", ".join(f"{'4+' if n == 4 else n}: {per_sentence[n]}" for n in range(5)))
    long = sum(n >= 60 for n in lengths)
    print(f"tokens: min {min(lengths)}, max {max(lengths)}, sentences with 60+ tokens: {long}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
